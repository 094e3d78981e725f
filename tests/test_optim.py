"""Optimisers and schedules: torch's update rules step by step, groups, state round trips."""

import numpy as np
import pytest

from stn_numba import io, optim
from stn_numba.tensor import Tensor

SHAPES = [(3, 2), (4,)]

SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=5e-3),
    dict(lr=0.05, momentum=0.5, maximize=True),
]
ADAM_CASES = [
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=1e-2),
    dict(lr=1e-2, amsgrad=True, weight_decay=1e-3),
]


def _params(rng, dtype=np.float64):
    return [Tensor(rng.standard_normal(s).astype(dtype), requires_grad=True) for s in SHAPES]


def _gradient_sequence(rng, steps):
    return [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]


def _run(optimizer, params, gradients):
    trajectory = []
    for grads in gradients:
        for p, g in zip(params, grads):
            p.grad = g.astype(p.dtype)
        optimizer.step()
        trajectory.append([p.data.copy() for p in params])
    return trajectory


def _run_torch(torch, cls, initial, gradients, **options):
    params = [torch.tensor(a.copy(), requires_grad=True) for a in initial]
    optimizer = cls(params, **options)
    trajectory = []
    for grads in gradients:
        for p, g in zip(params, grads):
            p.grad = torch.tensor(g.astype(initial[0].dtype))
        optimizer.step()
        trajectory.append([p.detach().numpy().copy() for p in params])
    return trajectory


@pytest.mark.parametrize("name,options", [("SGD", o) for o in SGD_CASES] + [("Adam", o) for o in ADAM_CASES]
                         + [("AdamW", dict(lr=1e-2, weight_decay=0.1))])
def test_updates_match_torch(rng, name, options):
    torch = pytest.importorskip("torch")
    params = _params(rng)
    initial = [p.data.copy() for p in params]
    gradients = _gradient_sequence(rng, 6)
    mine = _run(getattr(optim, name)(params, **options), params, gradients)
    theirs = _run_torch(torch, getattr(torch.optim, name), initial, gradients, **options)
    for step, (a, b) in enumerate(zip(mine, theirs)):
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-15, err_msg=f"step {step}")


def test_sgd_momentum_by_hand():
    p = Tensor(np.array([1.0]), requires_grad=True)
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5)
    p.grad = np.array([2.0])
    opt.step()          # g = 2 + 0.5·1 = 2.5, buf = 2.5, p = 1 - 0.25
    np.testing.assert_allclose(p.data, [0.75])
    p.grad = np.array([2.0])
    opt.step()          # g = 2 + 0.375 = 2.375, buf = 0.9·2.5 + 2.375 = 4.625, p = 0.75 - 0.4625
    np.testing.assert_allclose(p.data, [0.2875])


def test_adam_first_step_moves_by_lr_times_sign():
    # With bias correction, Adam's first step is lr · g / (|g| + eps·...) ≈ lr · sign(g).
    p = Tensor(np.array([1.0, -1.0, 0.5]), requires_grad=True)
    opt = optim.Adam([p], lr=0.01)
    p.grad = np.array([3.0, -0.2, 1e-3])
    opt.step()
    np.testing.assert_allclose(p.data, [0.99, -0.99, 0.49], rtol=1e-5)


def test_float32_parameters_stay_float32(rng):
    params = _params(rng, np.float32)
    for opt in (optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1), optim.Adam(params, amsgrad=True)):
        _run(opt, params, _gradient_sequence(rng, 2))
        assert all(p.dtype == np.float32 for p in params)
        assert all(v.dtype == np.float32 for s in opt.state.values() for v in s.values()
                   if isinstance(v, np.ndarray))


def test_parameter_groups_have_their_own_lr(rng):
    torch = pytest.importorskip("torch")
    a, b = _params(rng)
    initial = [a.data.copy(), b.data.copy()]
    gradients = _gradient_sequence(rng, 3)
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5, "momentum": 0.0}], lr=0.1, momentum=0.9)
    mine = _run(opt, [a, b], gradients)
    ta, tb = (torch.tensor(x.copy(), requires_grad=True) for x in initial)
    topt = torch.optim.SGD([{"params": [ta]}, {"params": [tb], "lr": 0.5, "momentum": 0.0}], lr=0.1, momentum=0.9)
    for grads in gradients:
        ta.grad, tb.grad = torch.tensor(grads[0]), torch.tensor(grads[1])
        topt.step()
    np.testing.assert_allclose(mine[-1][0], ta.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(mine[-1][1], tb.detach().numpy(), rtol=1e-13)


def test_zero_grad_and_parameters_without_grad(rng):
    a, b = _params(rng)
    opt = optim.SGD([a, b], lr=1.0)
    a.grad = np.ones_like(a.data)
    before = b.data.copy()
    opt.step()                      # b has no gradient: untouched
    np.testing.assert_array_equal(b.data, before)
    opt.zero_grad()
    assert a.grad is None
    a.grad = np.ones_like(a.data)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad, 0.0)


def test_step_with_closure_returns_the_loss(rng):
    p = Tensor(np.array([2.0]), requires_grad=True)
    opt = optim.SGD([p], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        loss.backward()
        return loss

    assert opt.step(closure).item() == 4.0
    np.testing.assert_allclose(p.data, [1.0])


@pytest.mark.parametrize("name,options", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                          ("Adam", dict(lr=1e-2, amsgrad=True, betas=(0.8, 0.9)))])
def test_state_dict_resume_through_a_checkpoint_continues_exactly(rng, tmp_path, name, options):
    gradients = _gradient_sequence(rng, 6)
    initial = _params(rng)
    straight = [Tensor(p.data.copy(), requires_grad=True) for p in initial]
    expected = _run(getattr(optim, name)(straight, **options), straight, gradients)[-1]

    first = [Tensor(p.data.copy(), requires_grad=True) for p in initial]
    opt = getattr(optim, name)(first, **options)
    _run(opt, first, gradients[:3])
    io.save({"params": {str(i): p.data for i, p in enumerate(first)}, "optimizer": opt.state_dict()},
            tmp_path / "ckpt.npz")

    checkpoint = io.load(tmp_path / "ckpt.npz")
    resumed = [Tensor(checkpoint["params"][str(i)], requires_grad=True) for i in range(len(SHAPES))]
    opt2 = getattr(optim, name)(resumed, lr=123.0)
    opt2.load_state_dict(checkpoint["optimizer"])
    assert opt2.param_groups[0]["lr"] == options["lr"]
    final = _run(opt2, resumed, gradients[3:])[-1]
    for x, y in zip(final, expected):
        np.testing.assert_array_equal(x, y)


def test_optimizer_argument_errors(rng):
    a, b = _params(rng)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="more than one group"):
        optim.SGD([{"params": [a]}, {"params": [a, b]}], lr=0.1)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        optim.Adam([a], lr=-1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([a], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="does not require grad"):
        optim.SGD([Tensor(np.ones(2))], lr=0.1)
    with pytest.raises(TypeError, match="must be Tensors"):
        optim.SGD([np.ones(2)], lr=0.1)
    opt = optim.SGD([a], lr=0.1)
    with pytest.raises(ValueError, match="parameter groups"):
        opt.load_state_dict(optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1).state_dict())


@pytest.mark.parametrize("name,options,epochs", [
    ("StepLR", dict(step_size=3, gamma=0.5), 10),
    ("CosineAnnealingLR", dict(T_max=5, eta_min=1e-3), 17),
    ("CosineAnnealingLR", dict(T_max=4), 9),
])
def test_schedules_match_torch(rng, name, options, epochs):
    torch = pytest.importorskip("torch")
    a, b = _params(rng)
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.3}], lr=0.1, momentum=0.9)
    schedule = getattr(optim, name)(opt, **options)
    ta, tb = (torch.zeros(2, requires_grad=True) for _ in range(2))
    topt = torch.optim.SGD([{"params": [ta]}, {"params": [tb], "lr": 0.3}], lr=0.1, momentum=0.9)
    tschedule = getattr(torch.optim.lr_scheduler, name)(topt, **options)
    for epoch in range(epochs):
        np.testing.assert_allclose(schedule.get_last_lr(), tschedule.get_last_lr(), rtol=1e-13, err_msg=str(epoch))
        assert [g["lr"] for g in opt.param_groups] == schedule.get_last_lr()
        opt.step()
        topt.step()
        schedule.step()
        tschedule.step()


def test_step_lr_closed_form_and_scheduler_state(rng, tmp_path):
    (a,) = _params(rng)[:1]
    opt = optim.SGD([a], lr=1.0)
    schedule = optim.StepLR(opt, step_size=2, gamma=0.1)
    lrs = []
    for _ in range(6):
        lrs.append(schedule.get_last_lr()[0])
        schedule.step()
    np.testing.assert_allclose(lrs, [1, 1, 0.1, 0.1, 0.01, 0.01])
    io.save({"schedule": schedule.state_dict(), "optimizer": opt.state_dict()}, tmp_path / "s.npz")
    checkpoint = io.load(tmp_path / "s.npz")
    opt2 = optim.SGD([a], lr=1.0)
    opt2.load_state_dict(checkpoint["optimizer"])
    schedule2 = optim.StepLR(opt2, step_size=2, gamma=0.1)
    schedule2.load_state_dict(checkpoint["schedule"])
    schedule.step()
    schedule2.step()
    assert schedule2.get_last_lr() == schedule.get_last_lr()
    np.testing.assert_allclose(schedule2.get_last_lr(), [1e-3])
