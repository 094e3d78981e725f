"""nn.SpatialTransformer: gradients of every family vs finite differences, identity init, torch parity."""

import numpy as np
import pytest

import reference
import stn_numba.nn as nn
import stn_numba.nn.functional as F
from stn_numba import io
from stn_numba._families import GRID_FAMILIES
from stn_numba.tensor import Tensor, manual_seed, no_grad

FAMILIES = list(GRID_FAMILIES)


def _perturb(layer, rng, scale=0.05):
    """Move the regressor off its identity init, so that gradients reach the localisation net."""
    weight, bias = layer.regressor.weight, layer.regressor.bias
    weight.data[...] = scale * rng.standard_normal(weight.shape)
    bias.data[...] += scale * rng.standard_normal(bias.shape)


def _tiny_layer(transform, rng, **options):
    """A float64 transformer on (2, 5, 6) images with a 2-layer localisation net, moved off the identity."""
    manual_seed(0)
    localisation = nn.Sequential(nn.Flatten(), nn.Linear(2 * 5 * 6, 4, dtype=np.float64), nn.Tanh())
    layer = nn.SpatialTransformer(localisation, transform, in_features=4, **options)
    _perturb(layer, rng)
    return layer


def _check_parameter_gradients(model, loss_of_model, eps=1e-6, rtol=1e-5, atol=1e-8):
    """Compare every parameter's tape gradient of ``loss_of_model()`` with central differences."""
    model.zero_grad()
    loss_of_model().backward()
    for name, p in model.named_parameters():
        def loss(values, p=p):
            saved = p.data.copy()
            p.data[...] = values
            with no_grad():
                result = loss_of_model().item()
            p.data[...] = saved
            return result

        expected = reference.central_difference(loss, p.data, eps)
        assert p.grad is not None, f"{name} got no gradient"
        assert np.abs(expected).max() > 0, f"{name}: the finite-difference gradient is zero, a weak test"
        np.testing.assert_allclose(p.grad, expected, rtol=rtol, atol=atol, err_msg=name)


# ------------------------------------------------------------------ gradients


@pytest.mark.parametrize("transform", FAMILIES)
def test_gradients_of_the_input_and_every_parameter_match_finite_differences(rng, transform):
    layer = _tiny_layer(transform, rng, output_size=(4, 3), control_points=(3, 3))
    images = rng.uniform(0, 1, (3, 2, 5, 6))
    weights = rng.standard_normal((3, 2, 4, 3))

    def loss_of_input(x):
        return (layer(Tensor(x)).data * weights).sum()

    x = Tensor(images.copy(), requires_grad=True)
    layer.zero_grad()
    (layer(x) * weights).sum().backward()
    np.testing.assert_allclose(x.grad, reference.central_difference(loss_of_input, images), rtol=1e-5,
                               atol=1e-8, err_msg="gradient of the input")
    _check_parameter_gradients(layer, lambda: (layer(Tensor(images)) * weights).sum())


def test_whole_model_gradients_match_finite_differences(rng):
    """Transformer (downsampled localisation) + conv classifier + cross-entropy, all parameters."""
    manual_seed(1)
    f64 = dict(dtype=np.float64)
    localisation = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(1, 2, 3, **f64), nn.ReLU())
    model = nn.Sequential(
        nn.SpatialTransformer(localisation, "affine", input_size=(1, 8, 8)),
        nn.Conv2d(1, 2, 3, **f64), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(18, 3, **f64))
    _perturb(model[0], rng)
    images = rng.uniform(0, 1, (4, 1, 8, 8))
    targets = np.array([0, 2, 1, 2])
    _check_parameter_gradients(model, lambda: F.cross_entropy(model(Tensor(images)), targets))


# ------------------------------------------------------------------ forward semantics


@pytest.mark.parametrize("dtype,atol", [(np.float32, 2e-6), (np.float64, 1e-12)])
@pytest.mark.parametrize("transform", FAMILIES)
def test_initial_transform_is_the_identity(rng, transform, dtype, atol):
    manual_seed(0)
    localisation = nn.Sequential(nn.Conv2d(3, 2, 3, dtype=dtype), nn.ReLU())
    layer = nn.SpatialTransformer(localisation, transform, input_size=(3, 7, 9))
    images = rng.uniform(-1, 1, (2, 3, 7, 9)).astype(dtype)
    theta = layer.localise(Tensor(images))
    identity = layer.regressor.bias.data
    assert theta.shape == (2, layer.num_parameters) and theta.dtype == dtype
    np.testing.assert_array_equal(theta.data, np.broadcast_to(identity, theta.shape))
    output = layer(Tensor(images))
    assert output.dtype == dtype
    np.testing.assert_allclose(output.data, images, atol=atol)


@pytest.mark.parametrize("transform", FAMILIES)
def test_identity_parameters_of_each_family(transform):
    layer = nn.SpatialTransformer(nn.Identity(), transform, in_features=1, control_points=(2, 3))
    expected = {"affine": [1, 0, 0, 0, 1, 0], "attention": [1, 0, 0], "similarity": [1, 0, 0, 0],
                "projective": [1, 0, 0, 0, 1, 0, 0, 0],
                "tps": [-1, -1, 0, -1, 1, -1, -1, 1, 0, 1, 1, 1]}[transform]
    np.testing.assert_array_equal(layer.regressor.bias.data, expected)
    np.testing.assert_array_equal(layer.regressor.weight.data, 0)


def test_downsampling_by_two_averages_pixel_blocks(rng):
    """Identity, bilinear, align_corners=False, half size: each output pixel reads the centre of a 2×2 block."""
    layer = nn.SpatialTransformer(nn.Flatten(), "attention", output_size=(3, 4), input_size=(2, 6, 8),
                                  dtype=np.float64)
    images = rng.uniform(0, 1, (2, 2, 6, 8))
    output = layer(Tensor(images))
    assert output.shape == (2, 2, 3, 4)
    np.testing.assert_allclose(output.data, images.reshape(2, 2, 3, 2, 4, 2).mean(axis=(3, 5)), atol=1e-12)


def _linear_interpolation_matrix(coordinates, size):
    """Rows of weights that interpolate a length-``size`` signal linearly at in-range ``coordinates``."""
    matrix = np.zeros((len(coordinates), size))
    for row, x in enumerate(coordinates):
        left = int(np.floor(x))
        matrix[row, left] += 1 - (x - left)
        if x > left:
            matrix[row, left + 1] += x - left
    return matrix


def test_attention_zooms_into_the_centre(rng):
    """s = 1/2 shows the central half of a 4×4 image at full size.

    Output pixel centres (2i + 1)/4 - 1 are halved and read the input at pixel
    coordinates 0.75, 1.25, 1.75, 2.25 along each axis (align_corners=False).
    """
    layer = nn.SpatialTransformer(nn.Flatten(), "attention", input_size=(1, 4, 4), dtype=np.float64)
    layer.regressor.bias.data[...] = [0.5, 0.0, 0.0]
    image = rng.uniform(0, 1, (1, 1, 4, 4))
    weights = _linear_interpolation_matrix([0.75, 1.25, 1.75, 2.25], 4)
    np.testing.assert_allclose(layer(Tensor(image)).data[0, 0], weights @ image[0, 0] @ weights.T, atol=1e-12)


def test_options_reach_the_sampler(rng):
    """nearest mode with border padding: a translation by a whole pixel shifts and repeats the edge."""
    layer = nn.SpatialTransformer(nn.Flatten(), "attention", input_size=(1, 3, 4), mode="nearest",
                                  padding_mode="border", dtype=np.float64)
    layer.regressor.bias.data[...] = [1.0, 0.5, 0.0]   # tx: one pixel of a 4-pixel row spans 2/4
    image = rng.uniform(0, 1, (1, 1, 3, 4))
    expected = np.concatenate([image[..., 1:], image[..., -1:]], axis=-1)
    np.testing.assert_array_equal(layer(Tensor(image)).data, expected)


def test_state_dict_round_trip(tmp_path, rng):
    manual_seed(2)
    localisation = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 5))
    layer = nn.SpatialTransformer(localisation, "projective", in_features=5)
    _perturb(layer, rng)
    state = layer.state_dict()
    assert list(state) == ["localisation.0.weight", "localisation.0.bias", "localisation.3.weight",
                           "localisation.3.bias", "regressor.weight", "regressor.bias"]
    io.save({"model": state}, tmp_path / "st.npz")
    manual_seed(3)
    other = nn.SpatialTransformer(
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 5)), "projective",
        in_features=5)
    images = Tensor(rng.uniform(0, 1, (2, 1, 6, 6)).astype(np.float32))
    assert not np.allclose(other(images).data, layer(images).data)
    other.load_state_dict(io.load(tmp_path / "st.npz")["model"])
    np.testing.assert_array_equal(other(images).data, layer(images).data)


def test_dry_run_keeps_training_flags_and_statistics():
    localisation = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU())
    before = localisation.state_dict()
    layer = nn.SpatialTransformer(localisation, "affine", input_size=(1, 6, 5))
    assert layer.regressor.in_features == 2 * 4 * 3
    assert all(module.training for module in layer.modules())
    for key, value in localisation.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


# ------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(transform="rigid", in_features=2), ValueError, "transform must be one of affine"),
    (dict(in_features=None), ValueError, "give in_features"),
    (dict(in_features=0), ValueError, "in_features must be a positive int"),
    (dict(in_features=2, output_size=(3, 0)), ValueError, "output_size"),
    (dict(in_features=2, output_size="big"), ValueError, "output_size"),
    (dict(in_features=2, mode="area"), ValueError, "mode must be one of"),
    (dict(in_features=2, padding_mode="wrap"), ValueError, "padding_mode must be one of"),
    (dict(in_features=2, dtype=np.int32), TypeError, "dtype must be float32 or float64"),
    (dict(transform="tps", in_features=2, control_points=(1, 4)), ValueError, "control_points"),
    (dict(input_size=(1, 4)), ValueError, "input_size must be"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        nn.SpatialTransformer(nn.Flatten(), **kwargs)


def test_localisation_must_be_a_module():
    with pytest.raises(TypeError, match="localisation must be a stn_numba.nn.Module"):
        nn.SpatialTransformer(lambda x: x, in_features=2)


def test_mismatched_features_and_inputs_are_explained(rng):
    layer = nn.SpatialTransformer(nn.Flatten(), "affine", in_features=10)
    with pytest.raises(ValueError, match="localisation made 12 features per image"):
        layer(Tensor(rng.uniform(0, 1, (2, 1, 3, 4)).astype(np.float32)))
    with pytest.raises(ValueError, match="expects a 4-D Tensor"):
        layer(Tensor(np.zeros((2, 10), np.float32)))


# ------------------------------------------------------------------ torch parity


def test_tutorial_model_built_with_the_layer_matches_torch():
    """The PyTorch STN tutorial's Net, its stn() replaced by SpatialTransformer: same loss and gradients (float64).

    ``tests/test_torch_tutorial.py`` checks the tutorial written by hand with
    ``affine_grid``/``grid_sample``; this checks the layer's wiring (flatten,
    regressor, θ layout, grid and sampler) against the same torch model.
    """
    torch = pytest.importorskip("torch")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.bench_train_step import tutorial_net

    torch.manual_seed(0)
    theirs = tutorial_net(torch.nn, torch.nn.functional).double().eval()
    with torch.no_grad():
        theirs.fc_loc[2].weight.normal_(0, 0.05)
        theirs.fc_loc[2].bias.copy_(torch.tensor([1.0, 0.05, 0.02, -0.03, 0.95, 0.01]))

    f64 = dict(dtype=np.float64)
    localisation = nn.Sequential(
        nn.Conv2d(1, 8, 7, **f64), nn.MaxPool2d(2, stride=2), nn.ReLU(),
        nn.Conv2d(8, 10, 5, **f64), nn.MaxPool2d(2, stride=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(90, 32, **f64), nn.ReLU())
    mine = nn.Sequential(
        nn.SpatialTransformer(localisation, "affine", in_features=32),
        nn.Conv2d(1, 10, 5, **f64), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(10, 20, 5, **f64), nn.MaxPool2d(2), nn.ReLU(),
        nn.Flatten(), nn.Linear(320, 50, **f64), nn.ReLU(), nn.Linear(50, 10, **f64)).eval()
    names = {"localization.0": "0.localisation.0", "localization.3": "0.localisation.3",
             "fc_loc.0": "0.localisation.7", "fc_loc.2": "0.regressor",
             "conv1": "1", "conv2": "4", "fc1": "8", "fc2": "10"}
    torch_params = dict(theirs.named_parameters())
    my_names = {f"{names[key.rsplit('.', 1)[0]]}.{key.rsplit('.', 1)[1]}": key for key in torch_params}
    mine.load_state_dict({mine_name: torch_params[key].detach().numpy() for mine_name, key in my_names.items()})

    rng = np.random.default_rng(5)
    images = rng.uniform(0, 1, (5, 1, 28, 28))
    images[:, :, 6:22, 12:16] += 1.0
    targets = rng.integers(0, 10, 5)
    expected = torch.nn.functional.nll_loss(theirs(torch.tensor(images)), torch.tensor(targets))
    expected.backward()
    loss = F.cross_entropy(mine(Tensor(images)), targets)
    loss.backward()
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-12)
    for mine_name, p in mine.named_parameters():
        reference_grad = torch_params[my_names[mine_name]].grad.numpy()
        assert np.abs(reference_grad).max() > 0, mine_name
        np.testing.assert_allclose(p.grad, reference_grad, rtol=1e-9, atol=1e-14, err_msg=mine_name)
