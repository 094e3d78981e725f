"""Optimisers and learning-rate schedules with ``torch.optim``'s update rules.

:class:`SGD`, :class:`Adam` and :class:`AdamW` implement the formulas of
torch's single-tensor code paths (momentum buffer cloned from the first
gradient, Adam's first moment by ``lerp``, bias corrections folded into the
step size and the denominator), so a model trained here follows torch's
parameter trajectory to rounding error. Parameter groups, ``zero_grad``,
``step(closure)``, :class:`StepLR` and :class:`CosineAnnealingLR` (torch's
recursive form) behave as in torch.

``state_dict()`` differs in layout from torch's so that it can be saved as
``.npz`` (:func:`stn_numba.io.save`): state and groups are keyed by the
strings "0", "1", ...; scalars are plain numbers.
"""

import math

import numpy as np

from .tensor import Tensor, enable_grad

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LRScheduler", "StepLR", "CosineAnnealingLR"]


def _as_scalar(value):
    """0-d arrays from a loaded checkpoint back to Python numbers."""
    return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


def _indexed(container, what):
    """A list from a list or from a dict keyed "0", "1", ... (or 0, 1, ...)."""
    if isinstance(container, (list, tuple)):
        return list(container)
    try:
        return [container[k] for k in sorted(container, key=int)]
    except (TypeError, ValueError):
        raise ValueError(f"optimizer state_dict: {what} must be a list or a dict keyed by "
                         f"integers, got keys {list(container)}") from None


class Optimizer:
    """Base class: parameter groups, ``zero_grad``, ``step`` and ``state_dict``.

    Parameters
    ----------
    params : iterable of Tensor, or iterable of dict
        Parameters to optimise, or parameter groups: dicts with a "params"
        entry and any hyperparameters that override ``defaults`` for that group.
    defaults : dict
        Hyperparameters of every group that does not set its own.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}
        params = list(params.values() if isinstance(params, dict) else params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group):
        """Add a group: a dict with "params" and optional hyperparameters."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError("a parameter group must be a dict with a 'params' entry")
        group = dict(group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer parameters must be Tensors, item {i} is {type(p).__name__}")
            if not p.requires_grad:
                raise ValueError(f"optimizer parameter {i} (shape {p.shape}) does not require grad")
            if id(p) in seen:
                raise ValueError(f"optimizer parameter {i} (shape {p.shape}) appears in more than one group")
            seen.add(id(p))
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        self.param_groups.append(group)

    def _check_group(self, group):
        if not group["lr"] >= 0:
            raise ValueError(f"lr must be >= 0, got {group['lr']!r}")
        if not group.get("weight_decay", 0) >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {group['weight_decay']!r}")

    def zero_grad(self, set_to_none=True):
        """Clear the gradients (set them to None by default, as torch)."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad[...] = 0

    def step(self, closure=None):
        """Update every parameter that has a gradient; return ``closure()``'s loss if given."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p.data, p.grad, self.state.setdefault(p, {}), group)
        return loss

    def _update(self, param, grad, state, group):
        raise NotImplementedError

    # -------------------------------------------------- state

    def state_dict(self):
        """Per-parameter state and hyperparameters, in a layout :func:`stn_numba.io.save` can store."""
        index = {}
        groups = {}
        for g, group in enumerate(self.param_groups):
            for p in group["params"]:
                index[id(p)] = len(index)
            saved = {k: v for k, v in group.items() if k != "params"}
            saved["params"] = np.array([index[id(p)] for p in group["params"]], np.int64)
            groups[str(g)] = saved
        state = {}
        for p, entries in self.state.items():
            if entries:
                state[str(index[id(p)])] = {k: (v.copy() if isinstance(v, np.ndarray) else v)
                                            for k, v in entries.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyperparameters and per-parameter state saved by :meth:`state_dict`."""
        groups = _indexed(state_dict["param_groups"], "param_groups")
        if len(groups) != len(self.param_groups):
            raise ValueError(f"optimizer state_dict has {len(groups)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        params = [p for group in self.param_groups for p in group["params"]]
        for g, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(np.atleast_1d(saved["params"])) != len(group["params"]):
                raise ValueError(f"optimizer state_dict: group {g} has {len(np.atleast_1d(saved['params']))} "
                                 f"parameters, this optimizer's has {len(group['params'])}")
        new_state = {}
        saved_state = state_dict.get("state", {})
        for key, entries in saved_state.items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(f"optimizer state_dict: state for parameter {i}, but there are {len(params)}")
            p = params[i]
            restored = {}
            for name, value in entries.items():
                if isinstance(value, np.ndarray) and value.ndim > 0:
                    if value.shape != p.shape:
                        raise ValueError(f"optimizer state_dict: {name} of parameter {i} has shape "
                                         f"{value.shape}, the parameter has {p.shape}")
                    value = value.astype(p.dtype, copy=True)
                restored[name] = _as_scalar(value)
            new_state[p] = restored
        for saved, group in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    group[k] = _as_scalar(v)
        self.state = new_state


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    With weight decay λ, momentum μ, dampening τ and learning rate γ::

        g ← g + λ·p
        b ← g (first step), else μ·b + (1-τ)·g
        g ← g + μ·b (nesterov), else b
        p ← p - γ·g
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False, maximize=False):
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov, maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        if not group["momentum"] >= 0:
            raise ValueError(f"momentum must be >= 0, got {group['momentum']!r}")

    def _update(self, param, grad, state, group):
        grad = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            grad = grad + float(group["weight_decay"]) * param
        momentum = float(group["momentum"])
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.copy()
            else:
                buf *= momentum
                buf += (1 - float(group["dampening"])) * grad
            grad = grad + momentum * buf if group["nesterov"] else buf
        param -= float(group["lr"]) * grad


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015), as ``torch.optim.Adam``, with optional AMSGrad.

    ``weight_decay`` adds λ·p to the gradient (L2, as torch's Adam); see
    :class:`AdamW` for decoupled decay.
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, maximize=False):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, maximize=maximize))

    def _check_group(self, group):
        super()._check_group(group)
        beta1, beta2 = group["betas"]
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {group['betas']!r}")
        if not group["eps"] >= 0:
            raise ValueError(f"eps must be >= 0, got {group['eps']!r}")

    def _update(self, param, grad, state, group):
        grad = -grad if group["maximize"] else grad
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = (float(b) for b in np.ravel(group["betas"]))
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(param)
        state["step"] += 1
        step = state["step"]
        if weight_decay:
            if self._decoupled:
                param *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * param
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg += (1 - beta1) * (grad - exp_avg)          # torch: exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * (grad * grad)
        step_size = lr / (1 - beta1 ** step)
        bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        else:
            second = exp_avg_sq
        denom = np.sqrt(second) / bias_correction2_sqrt + eps
        param -= step_size * (exp_avg / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as ``torch.optim.AdamW``."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


class LRScheduler:
    """Base class of learning-rate schedules (call :meth:`~stn_numba.optim.LRScheduler.step` after
    ``optimizer.step()``)."""

    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(optimizer).__name__} is not a stn_numba Optimizer")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"param_groups[{i}] has no 'initial_lr' to resume the schedule "
                                   f"from last_epoch={last_epoch}; load the optimizer state first")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._step_count = 0
        self._initial = True
        self.step()
        self._initial = False

    def get_lr(self):
        raise NotImplementedError

    def step(self):
        """Advance one epoch and set every group's lr."""
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The learning rates set by the last :meth:`~stn_numba.optim.LRScheduler.step`."""
        return list(self._last_lr)

    def state_dict(self):
        return {k: v for k, v in vars(self).items() if k not in ("optimizer", "_initial")}

    def load_state_dict(self, state_dict):
        for key, value in state_dict.items():
            if isinstance(value, np.ndarray) and value.ndim == 1:
                value = value.tolist()
            setattr(self, key, _as_scalar(value))


class StepLR(LRScheduler):
    """Multiply the lr by ``gamma`` every ``step_size`` epochs, as ``torch.optim.lr_scheduler.StepLR``."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        if int(step_size) < 1:
            raise ValueError(f"step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [group["lr"] for group in groups]
        return [group["lr"] * self.gamma for group in groups]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from the initial lr to ``eta_min`` over ``T_max`` epochs (SGDR without restarts).

    Uses torch's recursive form, so the lrs equal torch's, including when
    something else changes the lr between steps.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        if int(T_max) < 1:
            raise ValueError(f"T_max must be a positive int, got {T_max!r}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        t, t_max, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._initial:
            return [group["lr"] for group in groups]
        if (t - 1 - t_max) % (2 * t_max) == 0:
            return [group["lr"] + (base - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
                    for base, group in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * t / t_max)) / (1 + math.cos(math.pi * (t - 1) / t_max))
                * (group["lr"] - eta_min) + eta_min for group in groups]
