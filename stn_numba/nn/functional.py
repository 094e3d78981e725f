"""Differentiable operations on :class:`~stn_numba.tensor.Tensor`, named as ``torch.nn.functional``.

Write a model with ``import stn_numba.nn.functional as F`` exactly as with torch.
Every function takes Tensors (arrays where torch takes plain values, such as
class targets, which may be NumPy integer arrays) and returns a Tensor of the
input's dtype.

The spatial-transformer ops :func:`affine_grid` and :func:`grid_sample`
(Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015) call the core
functions :func:`stn_numba.affine_grid` and
:func:`stn_numba.grid_sample` and their exact backward; the gradient
of the sampled image is computed only when the image requires one.
"""

import numbers

import numpy as np

from .. import fields, sampling
from .._cpu import conv as _conv
from .._families import GRID_FAMILIES
from ..tensor import (
    _FLOAT_DTYPES,
    Concat,
    Function,
    Tensor,
    _check_dtype_pair,
    _lift,
    _normalise_axis,
    default_generator,
    matmul,
)

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "matmul",
    "sum", "mean", "max", "exp", "log", "relu", "tanh", "sigmoid",
    "reshape", "flatten", "transpose", "concat", "cat",
    "linear", "conv2d", "max_pool2d", "avg_pool2d", "dropout", "dropout2d", "batch_norm",
    "log_softmax", "softmax", "nll_loss", "cross_entropy", "mse_loss",
    "affine_grid", "grid_sample", "affine_grid_sample", "grid_push", "grid_count", "jacobian_determinant",
    "warp", "integrate_velocity",
]


def _tensor(value, name):
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a stn_numba.Tensor, got {type(value).__name__}")
    return value


def _float_tensor(value, name):
    _tensor(value, name)
    if value.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {value.dtype}")
    return value


def _same_dtype(**tensors):
    items = [(n, t) for n, t in tensors.items() if t is not None]
    first_name, first = items[0]
    for name, t in items[1:]:
        if t.dtype != first.dtype:
            raise TypeError(f"{first_name} and {name} must share one dtype, "
                            f"but {first_name} is {first.dtype} and {name} is {t.dtype}")


# ---------------------------------------------------------------- elementwise and shape


def add(input, other):
    """``input + other`` with broadcasting."""
    return _tensor(input, "input") + other


def sub(input, other):
    """``input - other`` with broadcasting."""
    return _tensor(input, "input") - other


def mul(input, other):
    """``input * other`` with broadcasting."""
    return _tensor(input, "input") * other


def div(input, other):
    """``input / other`` with broadcasting."""
    return _tensor(input, "input") / other


def neg(input):
    """``-input``."""
    return -_tensor(input, "input")


def pow(input, exponent):
    """``input ** exponent``; the exponent may be a scalar or a Tensor."""
    return _tensor(input, "input") ** exponent


def sum(input, dim=None, keepdim=False):
    """Sum over ``dim`` (all dimensions by default)."""
    return _tensor(input, "input").sum(dim, keepdim)


def mean(input, dim=None, keepdim=False):
    """Mean over ``dim`` (all dimensions by default)."""
    return _tensor(input, "input").mean(dim, keepdim)


def max(input, dim=None, keepdim=False):
    """Like ``torch.max``: a Tensor, or ``(values, indices)`` when ``dim`` is given."""
    return _tensor(input, "input").max(dim, keepdim)


def exp(input):
    return _tensor(input, "input").exp()


def log(input):
    return _tensor(input, "input").log()


def relu(input, inplace=False):
    """max(input, 0). ``inplace`` is accepted for torch compatibility and ignored."""
    return _tensor(input, "input").relu()


def tanh(input):
    return _tensor(input, "input").tanh()


def sigmoid(input):
    return _tensor(input, "input").sigmoid()


def reshape(input, shape):
    return _tensor(input, "input").reshape(shape)


def flatten(input, start_dim=0, end_dim=-1):
    return _tensor(input, "input").flatten(start_dim, end_dim)


def transpose(input, dim0, dim1):
    """Swap two dimensions (torch semantics)."""
    return _tensor(input, "input").transpose(dim0, dim1)


def concat(tensors, dim=0):
    """Concatenate Tensors along ``dim`` (``torch.cat``)."""
    tensors = [_tensor(t, f"tensors[{i}]") for i, t in enumerate(tensors)]
    if not tensors:
        raise ValueError("concat: tensors must not be empty")
    _same_dtype(**{f"tensors[{i}]": t for i, t in enumerate(tensors)})
    (axis,) = _normalise_axis(dim, tensors[0].ndim)
    return Concat.apply(*tensors, axis=axis)


cat = concat


# ---------------------------------------------------------------- linear


class _Linear(Function):
    single_threaded_blas = True

    def forward(self, x, weight, bias=None):
        self.x = x if self.needs_input_grad[1] else None
        self.weight = weight if self.needs_input_grad[0] else None
        out = np.matmul(x, weight.T)
        if bias is not None:
            out += bias
        return out

    def backward(self, grad):
        gx = gw = gb = None
        if self.needs_input_grad[0]:
            gx = np.matmul(grad, self.weight)
        if self.needs_input_grad[1]:
            gw = np.matmul(grad.reshape(-1, grad.shape[-1]).T, self.x.reshape(-1, self.x.shape[-1]))
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            gb = grad.reshape(-1, grad.shape[-1]).sum(axis=0)
        return gx, gw, gb


def linear(input, weight, bias=None):
    """``input @ weight.T + bias``; weight has torch's layout (out_features, in_features)."""
    _float_tensor(input, "input")
    _float_tensor(weight, "weight")
    _same_dtype(input=input, weight=weight, bias=bias)
    if weight.ndim != 2 or input.ndim < 1 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input's last dimension must equal weight's in_features; "
                         f"got input {input.shape} and weight {weight.shape}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    return _Linear.apply(*(t for t in (input, weight, bias) if t is not None))


# ---------------------------------------------------------------- convolution and pooling


def _pair(value, name, minimum):
    if isinstance(value, numbers.Integral):
        pair = (int(value), int(value))
    else:
        try:
            pair = tuple(int(v) for v in value)
        except TypeError:
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
        if len(pair) != 2 or any(p != v for p, v in zip(pair, value)):
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return pair


def _out_size(size, kernel, stride, padding, dilation, name):
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        raise ValueError(f"{name}: the input ({size} + 2·{padding} padding) is smaller than the "
                         f"kernel span {span}")
    return (size + 2 * padding - span) // stride + 1


def _check_4d(input, name):
    _float_tensor(input, "input")
    if input.ndim != 4:
        raise ValueError(f"{name}: input must be 4-D (N, C, H, W), got shape {input.shape}")


class _Conv2d(Function):
    """2-D cross-correlation as im2col + GEMM per block of output rows (see :mod:`stn_numba._cpu.conv`)."""

    def forward(self, x, weight, bias=None, *, stride, padding, dilation):
        geometry = _conv.Geometry.of(x.shape, weight.shape[2:], stride, padding, dilation)
        out = _conv.conv2d_forward(x, weight, bias, geometry)
        self.geometry = geometry
        self.x = x if self.needs_input_grad[1] else None
        self.weight = weight
        return out.reshape(x.shape[0], weight.shape[0], geometry.ho, geometry.wo)

    def backward(self, grad):
        gx, gw = _conv.conv2d_backward(grad.reshape(grad.shape[0], grad.shape[1], -1), self.x, self.weight,
                                       self.geometry, need_dx=self.needs_input_grad[0],
                                       need_dw=self.needs_input_grad[1])
        gb = None
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            # einsum's vectorised loop, not ``sum(axis=(0, 2, 3))``'s strided one: 64×32×20² took
            # 43 µs against 142 µs
            gb = np.einsum("ncp->c", grad.reshape(grad.shape[0], grad.shape[1], -1))
        return gx, gw, gb


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation) as ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    input : Tensor, shape (N, C, H, W)
    weight : Tensor, shape (O, C, kh, kw)
    bias : Tensor, shape (O,), optional
    stride, padding, dilation : int or pair of ints
        Zero padding on both sides of each spatial axis.
    groups : int
        Only 1 is supported.
    """
    _check_4d(input, "conv2d")
    _float_tensor(weight, "weight")
    _same_dtype(input=input, weight=weight, bias=bias)
    if groups != 1:
        raise ValueError(f"conv2d supports only groups=1, got groups={groups!r}")
    if weight.ndim != 4 or weight.shape[1] != input.shape[1]:
        raise ValueError(f"conv2d: weight must be (out_channels, {input.shape[1]}, kh, kw) for "
                         f"input with {input.shape[1]} channels, got weight {weight.shape}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    stride = _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    dilation = _pair(dilation, "dilation", 1)
    for axis in (0, 1):
        _out_size(input.shape[2 + axis], weight.shape[2 + axis], stride[axis], padding[axis],
                  dilation[axis], "conv2d")
    parents = (input, weight) if bias is None else (input, weight, bias)
    return _Conv2d.apply(*parents, stride=stride, padding=padding, dilation=dilation)


def _pool_geometry(input, kernel_size, stride, padding, dilation, name):
    _check_4d(input, name)
    kernel = _pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None or stride == () else _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    dilation = _pair(dilation, "dilation", 1)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        raise ValueError(f"{name}: padding {padding} must be at most half the kernel size {kernel}")
    for axis in (0, 1):
        _out_size(input.shape[2 + axis], kernel[axis], stride[axis], padding[axis], dilation[axis], name)
    return _conv.Geometry.of(input.shape, kernel, stride, padding, dilation)


class _MaxPool2d(Function):
    def forward(self, x, geometry):
        out, self.taps = _conv.max_pool(x, geometry)
        self.geometry = geometry
        return out

    def backward(self, grad):
        return _conv.max_pool_backward(grad, self.taps, self.geometry)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """2-D max pooling as ``torch.nn.functional.max_pool2d``.

    The gradient goes to the first maximum of each window (to its last NaN if
    it holds one, as in torch). ``ceil_mode`` and
    ``return_indices`` are not supported (they must keep their defaults).
    """
    if ceil_mode or return_indices:
        raise ValueError("max_pool2d supports only ceil_mode=False and return_indices=False")
    geometry = _pool_geometry(input, kernel_size, stride, padding, dilation, "max_pool2d")
    return _MaxPool2d.apply(input, geometry=geometry)


class _AvgPool2d(Function):
    def forward(self, x, geometry, count_include_pad):
        if count_include_pad:
            divisor = np.asarray(geometry.taps, x.dtype)
        else:
            divisor = _conv.in_bounds_taps(geometry, x.dtype)
        self.divisor, self.geometry = divisor, geometry
        return _conv.windows(x, geometry).sum(axis=-1) / divisor

    def backward(self, grad):
        share = grad / self.divisor
        taps = np.broadcast_to(share[..., None], share.shape + (self.geometry.taps,))
        return _conv.windows_backward(taps, self.geometry)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """2-D average pooling as ``torch.nn.functional.avg_pool2d``.

    ``ceil_mode`` and ``divisor_override`` are not supported (they must keep
    their defaults).
    """
    if ceil_mode or divisor_override is not None:
        raise ValueError("avg_pool2d supports only ceil_mode=False and divisor_override=None")
    geometry = _pool_geometry(input, kernel_size, stride, padding, 1, "avg_pool2d")
    return _AvgPool2d.apply(input, geometry=geometry, count_include_pad=bool(count_include_pad))


# ---------------------------------------------------------------- dropout and normalisation


def _check_p(p):
    if not isinstance(p, numbers.Real) or not 0 <= p <= 1:
        raise ValueError(f"dropout probability p must be a number in [0, 1], got {p!r}")


def _dropout(input, p, training, mask_shape):
    _check_p(p)
    if not training or p == 0:
        return input
    keep = default_generator().random(mask_shape) >= p
    scale = 0.0 if p == 1 else 1.0 / (1.0 - p)
    return input * Tensor((keep * scale).astype(input.dtype))


def dropout(input, p=0.5, training=True, inplace=False):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (training only).

    The mask comes from ``stn_numba.tensor.default_generator``. ``inplace``
    is accepted for torch compatibility and ignored.
    """
    _float_tensor(input, "input")
    return _dropout(input, p, training, input.shape)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """Zero whole channels of (N, C, H, W) input with probability ``p`` (training only)."""
    _check_4d(input, "dropout2d")
    return _dropout(input, p, training, input.shape[:2] + (1, 1))


class _BatchNorm(Function):
    """Normalise over every axis but 1 with the given (batch or running) statistics."""

    def forward(self, x, weight=None, bias=None, *, mean, var, eps, batch_stats):
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        self.inv_std = (1 / np.sqrt(var + x.dtype.type(eps))).reshape(shape)
        self.xhat = (x - mean.reshape(shape)) * self.inv_std
        self.weight = None if weight is None else weight.reshape(shape)
        self.axes, self.batch_stats = axes, batch_stats
        out = self.xhat if weight is None else self.xhat * self.weight
        return out if bias is None else out + bias.reshape(shape)

    def backward(self, grad):
        gxhat = grad if self.weight is None else grad * self.weight
        gx = None
        if self.needs_input_grad[0]:
            if self.batch_stats:
                count = grad.size // grad.shape[1]
                sum_g = gxhat.sum(self.axes, keepdims=True)
                sum_gx = (gxhat * self.xhat).sum(self.axes, keepdims=True)
                gx = self.inv_std / count * (count * gxhat - sum_g - self.xhat * sum_gx)
            else:
                gx = gxhat * self.inv_std
        rest = ()
        if len(self.parents) > 1:
            rest = ((grad * self.xhat).sum(self.axes), grad.sum(self.axes))[:len(self.parents) - 1]
        return (gx,) + rest


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation as ``torch.nn.functional.batch_norm``.

    In training mode the batch statistics normalise the input and, when given,
    ``running_mean`` and ``running_var`` (ndarrays) are updated in place with
    ``momentum`` (the unbiased batch variance, as in torch). Otherwise the
    running statistics are used. ``weight`` and ``bias`` must be given together
    or not at all.
    """
    _float_tensor(input, "input")
    if input.ndim < 2:
        raise ValueError(f"batch_norm: input must be (N, C, ...), got shape {input.shape}")
    if (weight is None) != (bias is None):
        raise ValueError("batch_norm: give both weight and bias, or neither")
    _same_dtype(input=input, weight=weight, bias=bias)
    axes = (0,) + tuple(range(2, input.ndim))
    if training:
        count = input.data.size // input.shape[1]
        if count < 2:
            raise ValueError(f"batch_norm: training needs more than one value per channel, "
                             f"got input shape {input.shape}")
        mean = input.data.mean(axis=axes)
        var = input.data.var(axis=axes)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * (count / (count - 1))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when training=False")
        mean, var = np.asarray(running_mean, input.dtype), np.asarray(running_var, input.dtype)
    parents = (input,) if weight is None else (input, weight, bias)
    return _BatchNorm.apply(*parents, mean=mean, var=var, eps=eps, batch_stats=bool(training))


# ---------------------------------------------------------------- losses


class _LogSoftmax(Function):
    def forward(self, x, axis):
        shifted = x - x.max(axis=axis, keepdims=True)
        out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
        self.out, self.axis = out, axis
        return out

    def backward(self, grad):
        return grad - np.exp(self.out) * grad.sum(axis=self.axis, keepdims=True)


def log_softmax(input, dim, dtype=None):
    """log(softmax(input)) along ``dim``, computed stably. ``dim`` is required."""
    _float_tensor(input, "input")
    if dtype is not None:
        input = input.astype(dtype)
    (axis,) = _normalise_axis(dim, input.ndim)
    return _LogSoftmax.apply(input, axis=axis)


def softmax(input, dim, dtype=None):
    """exp(log_softmax(input, dim))."""
    return log_softmax(input, dim, dtype).exp()


def _class_target(target, input, name):
    """Targets as an int64 array shaped like the input without its class axis."""
    target = np.asarray(target.data if isinstance(target, Tensor) else target)
    if target.dtype.kind not in "iu":
        raise TypeError(f"{name}: target must hold integer class indices, got dtype {target.dtype}")
    expected = input.shape[:1] + input.shape[2:]
    if target.shape != expected:
        raise ValueError(f"{name}: target must have shape {expected} for input {input.shape}, "
                         f"got {target.shape}")
    return target.astype(np.int64, copy=False)


class _NLLLoss(Function):
    def forward(self, logp, target, weight, ignore_index, reduction):
        classes = logp.shape[1]
        valid = target != ignore_index
        safe = np.where(valid, target, 0)
        if np.any(safe < 0) or np.any(safe >= classes):
            bad = target[valid & ((target < 0) | (target >= classes))][0]
            raise ValueError(f"nll_loss: target {bad} is out of range for {classes} classes")
        safe = safe[:, None]
        per_item = valid.astype(logp.dtype) if weight is None else weight[safe[:, 0]] * valid
        losses = -np.take_along_axis(logp, safe, axis=1)[:, 0] * per_item
        scale = per_item
        if reduction == "mean":
            total = per_item.sum()
            scale = per_item / total
            out = losses.sum() / total
        else:
            out = losses if reduction == "none" else losses.sum()
        self.safe, self.scale, self.shape, self.reduction = safe, scale, logp.shape, reduction
        return np.asarray(out, logp.dtype)

    def backward(self, grad):
        out = np.zeros(self.shape, grad.dtype)
        np.put_along_axis(out, self.safe, (-grad * self.scale)[:, None], axis=1)
        return out


_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood of integer class targets, as ``torch.nn.functional.nll_loss``.

    Parameters
    ----------
    input : Tensor, shape (N, C) or (N, C, d1, ...) or (C,)
        Log-probabilities.
    target : int ndarray or Tensor, shape (N,) or (N, d1, ...) or ()
    weight : ndarray or Tensor, shape (C,), optional
        Class weights (no gradient flows into them).
    ignore_index : int
        Targets equal to it contribute nothing (and are not counted by the mean).
    reduction : {"mean", "sum", "none"}
    """
    _float_tensor(input, "input")
    _check_reduction(reduction)
    if input.ndim == 1:
        target = np.asarray(target.data if isinstance(target, Tensor) else target).reshape(1)
        return nll_loss(input.reshape(1, -1), target, weight, ignore_index, reduction).reshape(())
    if input.ndim < 2:
        raise ValueError(f"nll_loss: input must be (N, C, ...) or (C,), got shape {input.shape}")
    target = _class_target(target, input, "nll_loss")
    if weight is not None:
        weight = np.asarray(weight.data if isinstance(weight, Tensor) else weight)
        if weight.shape != (input.shape[1],):
            raise ValueError(f"nll_loss: weight must have shape ({input.shape[1]},), got {weight.shape}")
        _check_dtype_pair(input, weight, "nll_loss weight")
        weight = weight.astype(input.dtype, copy=False)
    return _NLLLoss.apply(input, target=target, weight=weight, ignore_index=int(ignore_index),
                          reduction=reduction)


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """``nll_loss(log_softmax(input, 1), target)`` for integer class targets."""
    _float_tensor(input, "input")
    return nll_loss(log_softmax(input, 1 if input.ndim > 1 else 0), target, weight, ignore_index,
                    reduction)


def mse_loss(input, target, reduction="mean"):
    """Mean squared error, as ``torch.nn.functional.mse_loss`` (target may be an array)."""
    _float_tensor(input, "input")
    _check_reduction(reduction)
    target = _lift(target, input)
    if target.shape != input.shape:
        raise ValueError(f"mse_loss: target shape {target.shape} differs from input shape {input.shape}")
    diff = input - target
    squared = diff * diff
    if reduction == "none":
        return squared
    return squared.mean() if reduction == "mean" else squared.sum()


# ---------------------------------------------------------------- spatial transformer ops


class _FamilyGrid(Function):
    """The grid generator of a transform family (a :class:`stn_numba._families.GridFamily`)."""

    def forward(self, params, family, size, align_corners, **options):
        self.params, self.family, self.size, self.align_corners, self.options = (
            params, family, size, align_corners, options)
        return family.grid(params, size, align_corners=align_corners, **options)

    def backward(self, grad):
        return self.family.backward(grad, self.params, self.size, self.align_corners, **self.options)


def _family_grid(name, params, size, align_corners, **options):
    """The differentiable grid of the family ``name`` of ``GRID_FAMILIES`` at ``params`` (a Tensor)."""
    family = GRID_FAMILIES[name]
    _float_tensor(params, family.parameter_name)
    return _FamilyGrid.apply(params, family=family, size=tuple(int(s) for s in size), align_corners=align_corners,
                             **options)


def affine_grid(theta, size, align_corners=False):
    """Sampling grid of affine transforms θ, as ``torch.nn.functional.affine_grid``.

    The grid generator of Jaderberg et al. (2015), §3.2; see
    :func:`stn_numba.affine_grid` for the semantics.

    Parameters
    ----------
    theta : Tensor, shape (N, 2, 3) or (N, 3, 4)
    size : sequence of int
        (N, C, H, W) or (N, C, D, H, W).
    align_corners : bool
    """
    return _family_grid("affine", theta, size, align_corners)


class _GridSample(Function):
    def forward(self, input, grid, mode, padding_mode, align_corners, fill_value):
        self.input, self.grid = input, grid
        self.options = (mode, padding_mode, align_corners)
        self.fill_value = fill_value
        return sampling.grid_sample(input, grid, *self.options, fill_value=fill_value)

    def backward(self, grad):
        grad_input, grad_grid = sampling.grid_sample_backward(
            grad, self.input, self.grid, *self.options, fill_value=self.fill_value,
            input_requires_grad=self.needs_input_grad[0])
        return grad_input, (grad_grid if self.needs_input_grad[1] else None)


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False, *, fill_value=0.0):
    """Sample ``input`` at ``grid``, as ``torch.nn.functional.grid_sample``.

    The sampler of Jaderberg et al. (2015), §3.3; see
    :func:`stn_numba.grid_sample` for modes, paddings (with
    "circular" and "constant", whose ``fill_value`` taps outside read) and
    the non-finite coordinate rule. The gradient of ``input`` is computed
    only when ``input.requires_grad``.
    """
    _float_tensor(input, "input")
    _float_tensor(grid, "grid")
    return _GridSample.apply(input, grid, mode=mode, padding_mode=padding_mode,
                             align_corners=align_corners, fill_value=fill_value)


class _AffineGridSample(Function):
    def forward(self, input, theta, size, mode, padding_mode, align_corners, fill_value):
        self.input, self.theta = input, theta
        self.options = (size, mode, padding_mode, align_corners)
        self.fill_value = fill_value
        return sampling.affine_grid_sample(input, theta, *self.options, fill_value=fill_value)

    def backward(self, grad):
        grad_input, grad_theta = sampling.affine_grid_sample_backward(
            grad, self.input, self.theta, *self.options, fill_value=self.fill_value,
            input_requires_grad=self.needs_input_grad[0])
        return grad_input, (grad_theta if self.needs_input_grad[1] else None)


def affine_grid_sample(input, theta, size, mode="bilinear", padding_mode="zeros", align_corners=False, *,
                       fill_value=0.0):
    """``grid_sample(input, affine_grid(theta, size, align_corners), ...)`` as one op, without the grid.

    The spatial transformer's grid generator and sampler (Jaderberg et al.,
    2015, §3.2–3.3) fused; see :func:`stn_numba.affine_grid_sample`.
    Differentiable in ``input`` and ``theta``; the gradient of ``input`` is
    computed only when ``input.requires_grad``.

    Parameters
    ----------
    input : Tensor, shape (N, C, H, W) or (N, C, D, H, W)
    theta : Tensor, shape (N, 2, 3) or (N, 3, 4)
    size : sequence of int
        Output size (N, C, H_out, W_out) or (N, C, D_out, H_out, W_out).
    mode, padding_mode, align_corners, fill_value
        As in :func:`grid_sample`.
    """
    _float_tensor(input, "input")
    _float_tensor(theta, "theta")
    return _AffineGridSample.apply(input, theta, size=tuple(int(s) for s in size), mode=mode,
                                   padding_mode=padding_mode, align_corners=align_corners, fill_value=fill_value)



class _GridPush(Function):
    def forward(self, values, grid, input_shape, mode, padding_mode, align_corners):
        self.values, self.grid = values, grid
        self.options = (mode, padding_mode, align_corners)
        return sampling.grid_push(values, grid, input_shape, *self.options)

    def backward(self, grad):
        grad_values, grad_grid = sampling.grid_push_backward(
            grad, self.values, self.grid, *self.options, values_requires_grad=self.needs_input_grad[0])
        return grad_values, (grad_grid if self.needs_input_grad[1] else None)


def grid_push(values, grid, input_shape, mode="bilinear", padding_mode="zeros", align_corners=False):
    """Splat ``values`` at ``grid`` onto an image of ``input_shape``: the adjoint
    of :func:`grid_sample`; see :func:`stn_numba.grid_push`.
    Differentiable in ``values`` and ``grid``."""
    _float_tensor(values, "values")
    _float_tensor(grid, "grid")
    return _GridPush.apply(values, grid, input_shape=input_shape, mode=mode, padding_mode=padding_mode,
                           align_corners=align_corners)


class _GridCount(Function):
    def forward(self, grid, input_shape, mode, padding_mode, align_corners):
        self.grid = grid
        self.options = (mode, padding_mode, align_corners)
        return sampling.grid_count(grid, input_shape, *self.options)

    def backward(self, grad):
        return sampling.grid_count_backward(grad, self.grid, *self.options)


def grid_count(grid, input_shape, mode="bilinear", padding_mode="zeros", align_corners=False):
    """The weight each pixel of an ``input_shape`` image receives from
    ``grid``'s points (:func:`grid_push` of ones); see
    :func:`stn_numba.grid_count`. Differentiable in ``grid``."""
    _float_tensor(grid, "grid")
    return _GridCount.apply(grid, input_shape=input_shape, mode=mode, padding_mode=padding_mode,
                            align_corners=align_corners)


class _JacobianDeterminant(Function):
    def forward(self, displacement):
        self.displacement = displacement
        return fields.jacobian_determinant(displacement)

    def backward(self, grad):
        return fields.jacobian_determinant_backward(grad, self.displacement)


def jacobian_determinant(displacement):
    """det(I + ∇u) of a displacement field in pixels at every pixel, differentiable;
    see :func:`stn_numba.jacobian_determinant` (a loss on folds:
    ``relu(-jacobian_determinant(u)).mean()``)."""
    _float_tensor(displacement, "displacement")
    return _JacobianDeterminant.apply(displacement)


class _Warp(Function):
    def forward(self, input, displacement, mode, padding_mode, align_corners, fill_value):
        self.input, self.displacement = input, displacement
        self.options = (mode, padding_mode, align_corners)
        self.fill_value = fill_value
        return fields.warp(input, displacement, *self.options, fill_value=fill_value)

    def backward(self, grad):
        grad_input, grad_displacement = fields.warp_backward(
            grad, self.input, self.displacement, *self.options, fill_value=self.fill_value,
            input_requires_grad=self.needs_input_grad[0])
        return grad_input, (grad_displacement if self.needs_input_grad[1] else None)


def warp(input, displacement, mode="bilinear", padding_mode="zeros", align_corners=False, *, fill_value=0.0):
    """Sample ``input`` at each pixel + ``displacement`` (in pixels, array-axis
    order), differentiable in both; see :func:`stn_numba.warp`."""
    _float_tensor(input, "input")
    _float_tensor(displacement, "displacement")
    return _Warp.apply(input, displacement, mode=mode, padding_mode=padding_mode, align_corners=align_corners,
                       fill_value=fill_value)


class _IntegrateVelocity(Function):
    def forward(self, velocity, steps, mode, padding_mode, align_corners):
        self.velocity = velocity
        self.options = (steps, mode, padding_mode, align_corners)
        return fields.integrate_velocity(velocity, *self.options)

    def backward(self, grad):
        return fields.integrate_velocity_backward(grad, self.velocity, *self.options)


def integrate_velocity(velocity, steps=7, mode="bilinear", padding_mode="zeros", align_corners=False):
    """A stationary velocity field integrated into a displacement by scaling
    and squaring, differentiable; see :func:`stn_numba.integrate_velocity`."""
    _float_tensor(velocity, "velocity")
    return _IntegrateVelocity.apply(velocity, steps=steps, mode=mode, padding_mode=padding_mode,
                                    align_corners=align_corners)


# ---------------------------------------------------------------- other transform families


def projective_grid(theta, size, align_corners=False):
    """Sampling grid of homographies, differentiable; see :func:`stn_numba.projective_grid`.

    The paper's projective transformation (Jaderberg et al., 2015, §3.2). No
    torch counterpart.

    Parameters
    ----------
    theta : Tensor, shape (N, 3, 3)
    size : sequence of int
        (N, C, H, W).
    align_corners : bool
    """
    return _family_grid("projective", theta, size, align_corners)


def tps_grid(theta, size, control_points=(4, 4), align_corners=False):
    """Thin-plate spline sampling grid, differentiable; see :func:`stn_numba.tps_grid`.

    The paper's thin-plate spline transformation (Jaderberg et al., 2015,
    §3.2). No torch counterpart.

    Parameters
    ----------
    theta : Tensor, shape (N, K, 2)
        Source positions of the K control points.
    size : sequence of int
        (N, C, H, W).
    control_points : (int, int) or array_like
        As in :func:`stn_numba.tps_control_points`.
    align_corners : bool
    """
    return _family_grid("tps", theta, size, align_corners, control_points=control_points)


def attention_grid(params, size, align_corners=False):
    """Attention (scale + translation) sampling grid, differentiable.

    See :func:`stn_numba.attention_grid`.

    Parameters
    ----------
    params : Tensor, shape (N, 3)
        Rows (s, tx, ty).
    size : sequence of int
        (N, C, H, W).
    align_corners : bool
    """
    return _family_grid("attention", params, size, align_corners)


def similarity_grid(params, size, align_corners=False):
    """Similarity (scale, rotation, translation) sampling grid, differentiable.

    See :func:`stn_numba.similarity_grid`.

    Parameters
    ----------
    params : Tensor, shape (N, 4)
        Rows (s, angle, tx, ty), the angle in radians.
    size : sequence of int
        (N, C, H, W).
    align_corners : bool
    """
    return _family_grid("similarity", params, size, align_corners)


__all__ += ["projective_grid", "tps_grid", "attention_grid", "similarity_grid"]
