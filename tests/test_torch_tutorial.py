"""The PyTorch spatial-transformer tutorial model, run by torch and by stn_numba from the same source.

``tutorial_net(nn, F)`` (in ``benchmarks/bench_train_step.py``, which times
it) is the tutorial's ``Net`` (localisation network, affine grid, sampler,
classifier) written once against the ``torch.nn`` API; it is built here with
``torch.nn`` and with ``stn_numba.nn``. stn_numba loads torch's
state_dict (converted to NumPy) and must give the same loss, the same gradient
for every parameter, and the same parameters after several SGD (momentum,
weight decay) and Adam steps.

The tutorial initialises the last localisation layer to the identity transform
with zero weights, which would stop every gradient from reaching the
localisation convolutions; the test perturbs those weights so that it checks
the whole chain. Dropout is random, so the parity runs use eval mode.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

import stn_numba.nn as snn
import stn_numba.nn.functional as sF
from stn_numba import optim
from stn_numba.tensor import Tensor

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the repository root, for benchmarks/
from benchmarks.bench_train_step import tutorial_net  # noqa: E402


def _twin_models(dtype, seed=0):
    """A torch model (seeded, near-identity transform) and a stn_numba model loaded from its state_dict."""
    torch.manual_seed(seed)
    theirs = tutorial_net(torch.nn, torch.nn.functional).to(getattr(torch, np.dtype(dtype).name))
    with torch.no_grad():
        theirs.fc_loc[2].weight.mul_(0.1)
        theirs.fc_loc[2].bias.copy_(torch.tensor([1.0, 0.05, 0.02, -0.03, 0.95, 0.01]))
    mine = tutorial_net(snn, sF).to(dtype)
    mine.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    theirs.eval()
    mine.eval()
    return theirs, mine


def _batch(dtype, n=6, seed=1):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 1, (n, 1, 28, 28)).astype(dtype)
    images[:, :, 6:22, 12:16] += 1.0     # a stroke, so the transform matters
    return images, rng.integers(0, 10, n)


def _loss_and_grads(theirs, mine, images, targets):
    theirs.zero_grad()
    mine.zero_grad()
    expected = torch.nn.functional.nll_loss(theirs(torch.tensor(images)), torch.tensor(targets))
    expected.backward()
    loss = sF.nll_loss(mine(Tensor(images)), targets)
    loss.backward()
    return expected, loss


def _max_relative_error(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


@pytest.mark.parametrize("dtype,loss_rtol,grad_rtol", [(np.float64, 1e-12, 1e-9), (np.float32, 1e-6, 1e-4)])
def test_same_loss_and_gradients_as_torch(dtype, loss_rtol, grad_rtol):
    theirs, mine = _twin_models(dtype)
    images, targets = _batch(dtype)
    expected, loss = _loss_and_grads(theirs, mine, images, targets)
    assert loss.dtype == dtype
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=loss_rtol)
    torch_params = dict(theirs.named_parameters())
    names = [name for name, _ in mine.named_parameters()]
    assert names == list(torch_params)
    for name, p in mine.named_parameters():
        reference_grad = torch_params[name].grad.numpy()
        assert p.grad.dtype == dtype
        assert np.abs(reference_grad).max() > 0, f"{name}: torch's gradient is zero, the test would be weak"
        error = _max_relative_error(p.grad, reference_grad)
        assert error < grad_rtol, f"{name}: max relative gradient error {error:.2e}"


@pytest.mark.parametrize("name,options", [
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=5e-4)),
    ("Adam", dict(lr=1e-3, weight_decay=1e-4)),
])
def test_same_parameters_as_torch_after_training_steps(name, options):
    theirs, mine = _twin_models(np.float64)
    torch_opt = getattr(torch.optim, name)(theirs.parameters(), **options)
    my_opt = getattr(optim, name)(mine.parameters(), **options)
    for step in range(4):
        images, targets = _batch(np.float64, seed=10 + step)
        expected, loss = _loss_and_grads(theirs, mine, images, targets)
        np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-11, err_msg=f"step {step}")
        torch_opt.step()
        my_opt.step()
    torch_params = dict(theirs.named_parameters())
    for param_name, p in mine.named_parameters():
        np.testing.assert_allclose(p.data, torch_params[param_name].detach().numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=param_name)


def test_training_mode_runs_dropout_and_changes_the_output():
    _, mine = _twin_models(np.float32)
    images, _ = _batch(np.float32)
    evaluated = mine(Tensor(images)).data
    mine.train()
    trained = mine(Tensor(images)).data
    assert trained.shape == evaluated.shape == (6, 10)
    assert not np.allclose(trained, evaluated)


@pytest.mark.parametrize("size", [28, 42])
def test_table1_cnn_has_torchs_loss_and_gradients(size):
    """The Table-1 classifier that ``bench_train_step --model cnn`` times is the same network in both libraries."""
    from stn_numba.experiments import classifier

    torch.manual_seed(0)
    theirs = classifier((size, size), torch.nn).double()
    mine = classifier((size, size), snn).to(np.float64)
    mine.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    rng = np.random.default_rng(2)
    images, targets = rng.uniform(0, 1, (5, 1, size, size)), rng.integers(0, 10, 5)
    expected = torch.nn.functional.cross_entropy(theirs(torch.tensor(images)), torch.tensor(targets))
    expected.backward()
    loss = sF.cross_entropy(mine(Tensor(images)), targets)
    loss.backward()
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-12)
    torch_params = dict(theirs.named_parameters())
    assert [name for name, _ in mine.named_parameters()] == list(torch_params)
    for name, p in mine.named_parameters():
        assert _max_relative_error(p.grad, torch_params[name].grad.numpy()) < 1e-9, name
