"""nn.functional ops and nn layers: finite differences, torch parity, module semantics."""

import numpy as np
import pytest

import reference
import stn_numba.nn as nn
import stn_numba.nn.functional as F
from stn_numba import tensor as tape
from stn_numba.tensor import Tensor, no_grad
from test_tensor import gradcheck

CONV_CASES = [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=(0, 2), dilation=(2, 1)),
    dict(stride=(1, 3), padding=(3, 4), dilation=(1, 2)),   # padding wider than the kernel
    dict(padding=(2, 1), dilation=(2, 3)),
]


def _torch():
    return pytest.importorskip("torch")


def _to_torch(torch, array, requires_grad=False):
    return torch.tensor(np.asarray(array), requires_grad=requires_grad)


# ------------------------------------------------------------------ gradchecks (float64 central differences)


@pytest.mark.parametrize("options", CONV_CASES)
def test_conv2d_gradcheck(rng, options):
    gradcheck(lambda x, w, b: F.conv2d(x, w, b, **options),
              rng.standard_normal((2, 2, 6, 5)), rng.standard_normal((3, 2, 3, 2)), rng.standard_normal(3))


def test_conv2d_without_bias_gradcheck(rng):
    gradcheck(lambda x, w: F.conv2d(x, w, padding=1), rng.standard_normal((1, 2, 4, 4)),
              rng.standard_normal((2, 2, 3, 3)))


@pytest.mark.parametrize("options", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                     dict(kernel_size=(3, 2), stride=1, dilation=(1, 2))])
def test_max_pool2d_gradcheck(rng, options):
    gradcheck(lambda x: F.max_pool2d(x, **options), rng.permutation(2 * 2 * 7 * 6).reshape(2, 2, 7, 6) / 10.0)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("options", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)])
def test_avg_pool2d_gradcheck(rng, options, count_include_pad):
    gradcheck(lambda x: F.avg_pool2d(x, count_include_pad=count_include_pad, **options),
              rng.standard_normal((2, 2, 7, 6)))


@pytest.mark.parametrize("input_shape", [(4, 3), (2, 5, 3)])
def test_linear_gradcheck(rng, input_shape):
    gradcheck(F.linear, rng.standard_normal(input_shape), rng.standard_normal((2, 3)), rng.standard_normal(2))
    gradcheck(F.linear, rng.standard_normal(input_shape), rng.standard_normal((2, 3)))


def test_softmax_family_gradcheck(rng):
    x = rng.standard_normal((3, 4, 2))
    gradcheck(lambda t: F.log_softmax(t, dim=1), x)
    gradcheck(lambda t: F.softmax(t, dim=-1), x)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_gradcheck(rng, reduction):
    logits = rng.standard_normal((5, 4))
    target = np.array([0, 3, 1, 3, 2])
    weight = rng.uniform(0.5, 2.0, 4)
    gradcheck(lambda t: F.cross_entropy(t, target, reduction=reduction), logits)
    gradcheck(lambda t: F.nll_loss(F.log_softmax(t, 1), target, weight=weight, reduction=reduction), logits)
    gradcheck(lambda t: F.cross_entropy(t, np.array([0, -100, 1, 3, -100]), reduction=reduction), logits)
    gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), logits, rng.standard_normal((5, 4)))


def test_cross_entropy_with_spatial_targets_gradcheck(rng):
    target = rng.integers(0, 3, (2, 4, 5))
    gradcheck(lambda t: F.cross_entropy(t, target), rng.standard_normal((2, 3, 4, 5)))


@pytest.mark.parametrize("function", [F.dropout, F.dropout2d])
def test_dropout_gradcheck_with_a_fixed_mask(rng, function):
    def with_fixed_mask(x):
        tape.manual_seed(3)
        return function(x, p=0.4, training=True)

    gradcheck(with_fixed_mask, rng.standard_normal((2, 3, 4, 4)))


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradcheck(rng, training):
    mean, var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)

    def bn(x, w, b):
        return F.batch_norm(x, mean.copy(), var.copy(), w, b, training=training)

    gradcheck(bn, rng.standard_normal((4, 3, 2, 2)), rng.standard_normal(3), rng.standard_normal(3))


def test_whole_small_model_gradients_match_finite_differences(rng):
    tape.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(), nn.BatchNorm2d(3),
                          nn.Conv2d(3, 2, 2), nn.Tanh(), nn.Flatten(), nn.Linear(8, 4)).double()
    x = Tensor(rng.standard_normal((3, 1, 6, 6)))
    target = np.array([1, 3, 0])
    model(x)  # one step to move the running statistics off their defaults
    model.zero_grad()
    running = {k: v.copy() for k, v in model.state_dict().items() if "running" in k}
    F.cross_entropy(model(x), target).backward()
    for name, p in model.named_parameters():
        def loss(values, p=p):
            saved = p.data
            p.data = values
            model.load_state_dict(running, strict=False)
            with no_grad():
                result = F.cross_entropy(model(x), target).item()
            p.data = saved
            return result

        expected = reference.central_difference(loss, p.data)
        np.testing.assert_allclose(p.grad, expected, rtol=1e-6, atol=1e-8, err_msg=name)


# ------------------------------------------------------------------ kernels against the loop references


def _geometry_of(x_shape, kernel, options):
    from stn_numba._cpu import conv
    from stn_numba.nn.functional import _pair

    return conv.Geometry.of(x_shape, kernel, *(_pair(options.get(key, default), key, 0)
                                               for key, default in (("stride", 1), ("padding", 0), ("dilation", 1))))


@pytest.mark.parametrize("min_gemm_depth", [1, 8, 10**9])      # kernel rows per GEMM: 1, 2 and all 4
@pytest.mark.parametrize("block_rows", [1, 2, None])
@pytest.mark.parametrize("options", CONV_CASES)
def test_conv2d_kernels_match_the_loop_reference(rng, monkeypatch, options, block_rows, min_gemm_depth):
    from stn_numba._cpu import conv

    monkeypatch.setattr(conv, "MIN_GEMM_DEPTH", min_gemm_depth)
    x, w, b = rng.standard_normal((3, 2, 9, 8)), rng.standard_normal((4, 2, 4, 2)), rng.standard_normal(4)
    geometry = _geometry_of(x.shape, w.shape[2:], options)
    args = [(geometry.sh, geometry.sw), (geometry.ph, geometry.pw), (geometry.dh, geometry.dw)]
    expected = reference.conv2d(x, w, b, *args)
    out = conv.conv2d_forward(x, w, b, geometry, block_rows=block_rows)
    np.testing.assert_allclose(out.reshape(expected.shape), expected, rtol=1e-12, atol=1e-12)
    grad = rng.standard_normal(expected.shape)
    expected_dx, expected_dw = reference.conv2d_backward(grad, x, w, *args)
    for need_dx, need_dw in ((True, True), (True, False), (False, True)):
        dx, dw = conv.conv2d_backward(grad.reshape(3, 4, -1), x if need_dw else None, w, geometry,
                                      need_dx=need_dx, need_dw=need_dw, block_rows=block_rows)
        assert (dx is None) != need_dx and (dw is None) != need_dw
        if need_dx:
            np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-12)
        if need_dw:
            np.testing.assert_allclose(dw, expected_dw, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("options", [dict(kernel_size=2), dict(kernel_size=2, stride=1),
                                     dict(kernel_size=3, stride=2, padding=1),
                                     dict(kernel_size=(3, 2), stride=(1, 3), padding=(1, 0), dilation=(2, 1))])
def test_max_pool_kernel_matches_the_loop_reference(rng, options):
    from stn_numba._cpu import conv

    x = rng.standard_normal((2, 3, 9, 7)).astype(np.float32)  # odd sizes: pixels no 2×2 window reaches
    x[0, 0, :3, :3] = np.nan                       # windows of NaNs, of NaNs among numbers, of ±inf, of ties
    x[0, 1, 1:3, 1:3] = np.nan
    x[1, 2, 4:, :] = -np.inf
    x[1, 1, ::2, ::3] = np.inf
    x[1, 0] = np.round(x[1, 0])
    kernel = _pair_of(options["kernel_size"])
    geometry = _geometry_of(x.shape, kernel, {**options, "stride": options.get("stride", kernel)})
    expected, expected_argmax = reference.max_pool2d(x, kernel, (geometry.sh, geometry.sw),
                                                     (geometry.ph, geometry.pw), (geometry.dh, geometry.dw))
    out, taps = conv.max_pool(x, geometry)
    np.testing.assert_array_equal(out, expected)
    grad = rng.standard_normal(out.shape).astype(np.float32)
    expected_dx = np.zeros(x.shape, np.float64)
    for (n, c, p, q), index in np.ndenumerate(expected_argmax):
        expected_dx[n, c].flat[index] += grad[n, c, p, q]
    np.testing.assert_allclose(conv.max_pool_backward(grad, taps, geometry), expected_dx, rtol=1e-6, atol=1e-6)


def _pair_of(value):
    return (value, value) if isinstance(value, int) else tuple(value)


# ------------------------------------------------------------------ torch parity


@pytest.mark.parametrize("options", CONV_CASES)
def test_conv2d_matches_torch(rng, options):
    torch = _torch()
    x, w, b = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    tensors = [Tensor(a, requires_grad=True) for a in (x, w, b)]
    out = F.conv2d(*tensors, **options)
    grad = rng.standard_normal(out.shape)
    out.backward(grad)
    expected_inputs = [_to_torch(torch, a, True) for a in (x, w, b)]
    expected = torch.nn.functional.conv2d(*expected_inputs, **options)
    expected.backward(_to_torch(torch, grad))
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
    for mine, theirs in zip(tensors, expected_inputs):
        np.testing.assert_allclose(mine.grad, theirs.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,options", [
    ("max_pool2d", dict(kernel_size=2)),
    ("max_pool2d", dict(kernel_size=3, stride=2, padding=1)),
    ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1)),
    ("avg_pool2d", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
])
def test_pooling_matches_torch(rng, name, options):
    torch = _torch()
    x = rng.standard_normal((2, 3, 9, 8)).astype(np.float32)
    mine = Tensor(x, requires_grad=True)
    out = getattr(F, name)(mine, **options)
    grad = rng.standard_normal(out.shape).astype(np.float32)
    out.backward(grad)
    theirs = _to_torch(torch, x, True)
    expected = getattr(torch.nn.functional, name)(theirs, **options)
    expected.backward(_to_torch(torch, grad))
    assert out.dtype == np.float32 and mine.grad.dtype == np.float32
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(mine.grad, theirs.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_losses_match_torch(rng):
    torch = _torch()
    logits = rng.standard_normal((6, 4))
    target = np.array([0, 3, -100, 3, 2, 1])
    weight = rng.uniform(0.5, 2.0, 4)
    for reduction in ("mean", "sum", "none"):
        mine = Tensor(logits, requires_grad=True)
        out = F.cross_entropy(mine, target, weight=weight, reduction=reduction)
        out.backward(np.ones(out.shape))
        theirs = _to_torch(torch, logits, True)
        expected = torch.nn.functional.cross_entropy(theirs, torch.tensor(target), weight=_to_torch(torch, weight),
                                                     reduction=reduction)
        expected.backward(torch.ones_like(expected))
        np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(mine.grad, theirs.grad.numpy(), rtol=1e-12, atol=1e-15)
    prediction, goal = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    torch_loss = torch.nn.functional.mse_loss(_to_torch(torch, prediction), _to_torch(torch, goal)).item()
    np.testing.assert_allclose(F.mse_loss(Tensor(prediction), goal).item(), torch_loss)


def test_batch_norm_layer_matches_torch_over_training_and_eval(rng):
    torch = _torch()
    mine, theirs = nn.BatchNorm2d(3, dtype=np.float64), torch.nn.BatchNorm2d(3, dtype=torch.float64)
    weight, bias = rng.standard_normal(3), rng.standard_normal(3)
    mine.load_state_dict({**mine.state_dict(), "weight": weight, "bias": bias})
    with torch.no_grad():
        theirs.weight.copy_(_to_torch(torch, weight))
        theirs.bias.copy_(_to_torch(torch, bias))
    for mode in ("train", "train", "eval"):
        getattr(mine, mode)()
        getattr(theirs, mode)()
        x = rng.standard_normal((4, 3, 3, 2)) * 2 + 1
        a, b = Tensor(x, requires_grad=True), _to_torch(torch, x, True)
        out, expected = mine(a), theirs(b)
        grad = rng.standard_normal(out.shape)
        out.backward(grad)
        expected.backward(_to_torch(torch, grad))
        np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-10, atol=1e-12)
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(mine.state_dict()[key], value.numpy(), rtol=1e-12, err_msg=key)


def test_window_kernels_are_bitwise_deterministic_for_any_thread_count(rng):
    numba = pytest.importorskip("numba")
    from stn_numba._cpu import conv

    x = rng.standard_normal((3, 4, 11, 9)).astype(np.float32)
    geometry = conv.Geometry.of(x.shape, (3, 2), (2, 1), (1, 1), (1, 2))
    pool = conv.Geometry.of(x.shape, (3, 3), (2, 2), (1, 1), (1, 1))

    weight = rng.standard_normal((5, 4, 3, 2)).astype(np.float32)
    grad = rng.standard_normal((3, 5, geometry.ho * geometry.wo)).astype(np.float32)

    def run():
        out, taps = conv.max_pool(x, pool)
        return (conv.conv2d_forward(x, weight, None, geometry, block_rows=2),
                *conv.conv2d_backward(grad, x, weight, geometry, block_rows=2),
                out, taps, conv.max_pool_backward(np.cos(out), taps, pool))

    saved = numba.get_num_threads()
    try:
        results = []
        for threads in (1, numba.config.NUMBA_NUM_THREADS):
            numba.set_num_threads(threads)
            results.append(run())
    finally:
        numba.set_num_threads(saved)
    for first, second in zip(*results):
        assert first.tobytes() == second.tobytes()


def test_max_pool_ties_and_nan_follow_torch():
    torch = _torch()
    x = np.array([[[[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, np.nan, 1.0], [-np.inf, -np.inf, 5.0, 5.0],
                    [-np.inf, -np.inf, np.nan, 4.0]]]])
    mine = Tensor(x, requires_grad=True)
    out = F.max_pool2d(mine, 2)
    out.backward(np.arange(1.0, 5.0).reshape(out.shape))
    theirs = _to_torch(torch, x, True)
    expected = torch.nn.functional.max_pool2d(theirs, 2)
    expected.backward(torch.arange(1.0, 5.0, dtype=torch.float64).reshape(expected.shape))
    np.testing.assert_array_equal(out.data, expected.detach().numpy())
    np.testing.assert_array_equal(mine.grad, theirs.grad.numpy())


def test_dropout_keeps_the_expected_fraction_and_scales():
    tape.manual_seed(1)
    out = F.dropout(Tensor(np.ones((200, 200), np.float32)), p=0.25)
    kept = out.data != 0
    assert out.dtype == np.float32
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(out.data[kept], 1 / 0.75, rtol=1e-6)
    channels = F.dropout2d(Tensor(np.ones((50, 40, 3, 3))), p=0.5).data
    assert np.all((channels == channels[:, :, :1, :1]))  # whole channels are kept or dropped
    x = Tensor(np.ones(5))
    assert F.dropout(x, 0.5, training=False) is x and F.dropout(x, 0.0) is x
    np.testing.assert_array_equal(F.dropout(x, 1.0).data, 0.0)


# ------------------------------------------------------------------ spatial-transformer graph ops


def test_affine_grid_and_grid_sample_call_the_core_and_skip_the_image_gradient(rng, monkeypatch):
    from stn_numba import sampling

    calls = []
    original = sampling.grid_sample_backward

    def spy(*args, **kwargs):
        calls.append(kwargs["input_requires_grad"])
        return original(*args, **kwargs)

    monkeypatch.setattr(sampling, "grid_sample_backward", spy)
    image = Tensor(rng.standard_normal((2, 1, 5, 4)))
    theta = Tensor(np.tile([[1.0, 0.1, 0.0], [-0.1, 0.9, 0.05]], (2, 1, 1)), requires_grad=True)
    out = F.grid_sample(image, F.affine_grid(theta, image.shape, align_corners=False), align_corners=False)
    out.sum().backward()
    assert calls == [False] and image.grad is None and theta.grad.shape == (2, 2, 3)


@pytest.mark.parametrize("align_corners", [False, True])
def test_spatial_transformer_ops_gradcheck(rng, align_corners):
    theta = np.tile([[0.9, 0.2, 0.1], [-0.15, 1.1, -0.05]], (2, 1, 1)) + 0.01 * rng.standard_normal((2, 2, 3))

    def stn(image, theta):
        grid = F.affine_grid(theta, (2, 2, 4, 3), align_corners=align_corners)
        return F.grid_sample(image, grid, padding_mode="border", align_corners=align_corners)

    gradcheck(stn, rng.standard_normal((2, 2, 5, 4)), theta, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ modules


def _tutorial_like(nn_module):
    return nn_module.Sequential(nn_module.Conv2d(1, 4, 3), nn_module.BatchNorm2d(4), nn_module.ReLU(),
                                nn_module.Flatten(), nn_module.Linear(4 * 4 * 4, 2))


def test_parameter_names_and_state_dict_keys_match_torch():
    torch = _torch()
    mine, theirs = _tutorial_like(nn), _tutorial_like(torch.nn)
    assert [n for n, _ in mine.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert list(mine.state_dict()) == list(theirs.state_dict())
    for (name, p), (_, q) in zip(mine.named_parameters(), theirs.named_parameters()):
        assert p.shape == tuple(q.shape), name
    state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    mine.load_state_dict(state)
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32)
    theirs.eval(), mine.eval()
    np.testing.assert_allclose(mine(Tensor(x)).data, theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_default_initialisation_follows_torch_bounds():
    tape.manual_seed(0)
    conv, linear = nn.Conv2d(10, 20, 5), nn.Linear(320, 50)
    for layer, fan_in in ((conv, 250), (linear, 320)):
        bound = 1 / np.sqrt(fan_in)
        for p in (layer.weight, layer.bias):
            assert p.dtype == np.float32 and p.requires_grad
            assert np.abs(p.data).max() <= bound
        assert abs(layer.weight.data.std() - bound / np.sqrt(3)) < 0.05 * bound
    assert conv.weight.shape == (20, 10, 5, 5) and linear.weight.shape == (50, 320)
    tape.manual_seed(0)
    np.testing.assert_array_equal(nn.Conv2d(10, 20, 5).weight.data, conv.weight.data)


def test_module_registration_modes_and_dtypes():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5))
            self.head = nn.Linear(4, 1, bias=False)
            self.scale = nn.Parameter(np.ones(1, np.float32))
            self.register_buffer("counter", np.zeros(1))
            self.note = "not registered"

        def forward(self, x):
            return self.head(self.body(x)) * self.scale

    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["scale", "body.0.weight", "body.0.bias", "head.weight"]
    assert list(net.state_dict()) == ["scale", "counter", "body.0.weight", "body.0.bias", "head.weight"]
    assert net.head.bias is None and net.note == "not registered"
    net.eval()
    assert all(not m.training for m in net.modules())
    out = net(Tensor(np.ones((2, 3), np.float32)))
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())
    net.train().double()
    assert all(m.training for m in net.modules())
    assert all(p.dtype == np.float64 for p in net.parameters()) and net.counter.dtype == np.float64
    assert len(net.body) == 2 and isinstance(net.body[0], nn.Linear) and len(net.body[:1]) == 1
    with pytest.raises(TypeError, match="Parameter or None"):
        net.head.weight = np.ones((1, 4))


def test_eval_mode_turns_dropout_off():
    layer = nn.Dropout(0.9)
    x = Tensor(np.ones(100))
    assert (layer(x).data == 0).any()
    np.testing.assert_array_equal(layer.eval()(x).data, x.data)


def test_state_dict_returns_copies():
    layer = nn.Linear(2, 2)
    state = layer.state_dict()
    layer.weight.data += 1
    assert not np.array_equal(state["weight"], layer.weight.data)


def test_load_state_dict_reports_missing_unexpected_and_shape_errors():
    layer = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    good = layer.state_dict()
    before = layer.state_dict()
    with pytest.raises(KeyError, match=r"missing keys \['2.bias'\].*unexpected keys \['2.extra'\]"):
        layer.load_state_dict({**{k: v for k, v in good.items() if k != "2.bias"}, "2.extra": np.ones(1)})
    with pytest.raises(ValueError, match=r"0.weight: checkpoint \(2, 3\), model \(3, 2\)"):
        layer.load_state_dict({**good, "0.weight": np.ones((2, 3)), "0.bias": np.zeros(3)})
    for key, value in layer.state_dict().items():
        np.testing.assert_array_equal(value, before[key])   # nothing changed on error
    result = layer.load_state_dict({"0.weight": np.zeros((3, 2)), "junk": np.ones(1)}, strict=False)
    assert result.missing_keys == ["0.bias", "2.weight", "2.bias"] and result.unexpected_keys == ["junk"]
    np.testing.assert_array_equal(layer[0].weight.data, 0.0)
    assert layer[0].weight.dtype == np.float32


def test_bad_arguments_give_clear_errors(rng):
    x = Tensor(rng.standard_normal((1, 2, 5, 5)))
    with pytest.raises(ValueError, match="2 channels"):
        F.conv2d(x, Tensor(rng.standard_normal((3, 1, 3, 3))))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        F.conv2d(x, Tensor(rng.standard_normal((3, 2, 7, 7))))
    with pytest.raises(TypeError, match="input must be a stn_numba.Tensor"):
        F.relu(np.ones(3))
    with pytest.raises(TypeError, match="share one dtype"):
        F.linear(x.reshape(2, 25), Tensor(np.ones((3, 25), np.float32)))
    with pytest.raises(ValueError, match="4-D"):
        F.max_pool2d(Tensor(np.ones((2, 3))), 2)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.conv2d(x, Tensor(rng.standard_normal((3, 2, 3, 3))), stride=0)
    with pytest.raises(ValueError, match="out of range for 3 classes"):
        F.cross_entropy(Tensor(np.ones((2, 3))), np.array([0, 3]))
    with pytest.raises(TypeError, match="integer class indices"):
        F.nll_loss(Tensor(np.ones((2, 3))), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction"):
        F.mse_loss(Tensor(np.ones(2)), np.ones(2), reduction="avg")
    with pytest.raises(ValueError, match="dropout probability"):
        nn.Dropout(1.5)
