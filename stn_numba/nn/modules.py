"""Layers with torch's names, weight layouts, default initialisation and state_dict keys.

A model written for ``torch.nn`` runs here with ``import stn_numba.nn as nn``,
and loads torch's ``state_dict`` once its tensors are converted to NumPy
(``{k: v.numpy() for k, v in sd.items()}``).

Initialisation follows torch's defaults: the weights of :class:`Linear` and
:class:`Conv2d` are drawn from U(-b, b) with b = 1/sqrt(fan_in)
(``kaiming_uniform_`` with a = sqrt(5)), and so are their biases. The numbers
come from ``stn_numba.tensor.default_generator`` (reseed it with
:func:`stn_numba.tensor.manual_seed`), so they differ from torch's for the
same seed.

Differences from torch: :meth:`Module.state_dict` returns copies of the arrays
(a saved "best model" does not change as training goes on); parameters have a
dtype (float32 by default, or the ``dtype`` argument) but no device.
"""

import math
from collections import OrderedDict, namedtuple

import numpy as np

from ..tensor import _FLOAT_DTYPES, Tensor, default_generator
from . import functional as F

__all__ = [
    "Parameter", "Module", "Sequential", "Linear", "Conv2d", "MaxPool2d", "AvgPool2d",
    "ReLU", "Tanh", "Sigmoid", "Dropout", "Dropout2d", "Flatten", "Identity", "BatchNorm2d",
    "Warp", "IntegrateVelocity",
]


def _dtype(dtype):
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


class Parameter(Tensor):
    """A Tensor that a :class:`Module` registers as a parameter (requires_grad by default)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of layers and models, as ``torch.nn.Module``.

    Assigning a :class:`Parameter` or a Module to an attribute registers it;
    :meth:`register_buffer` registers a non-trainable array (such as a
    running mean) that belongs to the state dict. Subclasses implement
    ``forward``; call the module itself to run it.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -------------------------------------------------- registration

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError("call Module.__init__() before assigning attributes")
        if isinstance(value, Parameter):
            self._forget(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            self._modules[name] = value
        elif name in self._parameters or name in self._modules:
            if value is not None:
                kind = "Parameter" if name in self._parameters else "Module"
                raise TypeError(f"cannot assign a {type(value).__name__} to '{name}': "
                                f"a {kind} or None is expected")
            (self._parameters if name in self._parameters else self._modules)[name] = None
        elif name in self._buffers:
            self._buffers[name] = None if value is None else np.asarray(
                value.data if isinstance(value, Tensor) else value)
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name):
        for registry in (self._parameters, self._buffers, self._modules, self.__dict__):
            registry.pop(name, None)

    def __getattr__(self, name):
        for registry in ("_parameters", "_buffers", "_modules"):
            entries = self.__dict__.get(registry)
            if entries is not None and name in entries:
                return entries[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """Register a non-trainable ndarray (or None) that :meth:`state_dict` includes."""
        if isinstance(array, Tensor):
            array = array.data
        self._forget(name)
        self._buffers[name] = None if array is None else np.asarray(array)

    def register_parameter(self, name, parameter):
        """Register a :class:`Parameter` (or None) under ``name``."""
        if parameter is not None and not isinstance(parameter, Parameter):
            raise TypeError(f"register_parameter: {name} must be a Parameter or None, "
                            f"got {type(parameter).__name__}")
        self._forget(name)
        self._parameters[name] = parameter

    # -------------------------------------------------- traversal

    def named_modules(self, prefix=""):
        """Yield (name, module) for this module and all below it, depth first."""
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def children(self):
        for child in self._modules.values():
            if child is not None:
                yield child

    def named_parameters(self, prefix=""):
        """Yield (dotted name, Parameter) with torch's names, each parameter once."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self, prefix=""):
        for module_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{module_name}.{name}" if module_name else name), b

    def buffers(self):
        for _, b in self.named_buffers():
            yield b

    # -------------------------------------------------- modes and gradients

    def train(self, mode=True):
        """Set training mode (dropout active, batch statistics) here and below; return self."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        """Set evaluation mode; return self."""
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Clear the gradients of all parameters."""
        for p in self.parameters():
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad[...] = 0

    def requires_grad_(self, requires_grad=True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def to(self, dtype):
        """Convert every floating parameter and buffer to ``dtype`` in place; return self."""
        dtype = _dtype(dtype)
        for module in self.modules():
            for p in module._parameters.values():
                if p is not None:
                    p.data = p.data.astype(dtype)
                    p.grad = None if p.grad is None else p.grad.astype(dtype)
            for name, b in module._buffers.items():
                if b is not None and b.dtype in _FLOAT_DTYPES:
                    module._buffers[name] = b.astype(dtype)
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    # -------------------------------------------------- state

    def state_dict(self):
        """Return an OrderedDict of copies of every parameter and buffer, with torch's keys."""
        state = OrderedDict()
        for module_name, module in self.named_modules():
            dot = f"{module_name}." if module_name else ""
            for name, p in module._parameters.items():
                if p is not None:
                    state[dot + name] = p.data.copy()
            for name, b in module._buffers.items():
                if b is not None:
                    state[dot + name] = b.copy()
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays from ``state_dict`` into the parameters and buffers.

        Values may be ndarrays, Tensors or anything ``np.asarray`` accepts
        (convert torch tensors with ``.numpy()``); they are cast to the
        existing dtype. With ``strict`` (default), missing or unexpected keys
        are an error; a shape mismatch always is. Nothing is changed when an
        error is raised.

        Returns
        -------
        IncompatibleKeys
            ``(missing_keys, unexpected_keys)``.

        Raises
        ------
        KeyError
            Strict loading with missing or unexpected keys (all are listed).
        ValueError
            A shape mismatch (every one is listed).
        """
        targets = OrderedDict()
        for module_name, module in self.named_modules():
            dot = f"{module_name}." if module_name else ""
            for registry in (module._parameters, module._buffers):
                for name, value in registry.items():
                    if value is not None:
                        targets[dot + name] = (registry, name)
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        source = getattr(state_dict, "path", None)
        where = f" (from {source})" if source else ""
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict{where}: the state dict does not fit "
                           f"{type(self).__name__}: missing keys {missing}, unexpected keys {unexpected}")
        updates, mismatched = [], []
        for key, (registry, name) in targets.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            array = np.asarray(value.data if isinstance(value, Tensor) else value)
            current = registry[name]
            current = current.data if isinstance(current, Tensor) else current
            if array.shape != current.shape:
                mismatched.append(f"{key}: checkpoint {array.shape}, model {current.shape}")
            elif array.dtype == object:
                mismatched.append(f"{key}: an object array")
            else:
                updates.append((current, array))
        if mismatched:
            raise ValueError(f"load_state_dict{where}: shape mismatch for " + "; ".join(mismatched))
        for current, array in updates:
            np.copyto(current, array, casting="unsafe")
        return IncompatibleKeys(missing, unexpected)

    # -------------------------------------------------- calling

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ")
                 for name, child in self._modules.items()]
        body = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({body})"
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", ..."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                setattr(self, name, module)
        else:
            for i, module in enumerate(modules):
                setattr(self, str(i), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.values())
        return Sequential(*items[index]) if isinstance(index, slice) else items[index]

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x


def _uniform(shape, bound, dtype):
    return Parameter(default_generator().uniform(-bound, bound, size=shape).astype(dtype))


class Linear(Module):
    """``y = x @ weight.T + bias``; weight (out_features, in_features), torch's default init."""

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        dtype = _dtype(dtype)
        self.in_features, self.out_features = int(in_features), int(out_features)
        bound = 1 / math.sqrt(self.in_features) if self.in_features else 0.0
        self.weight = _uniform((self.out_features, self.in_features), bound, dtype)
        if bias:
            self.bias = _uniform((self.out_features,), bound, dtype)
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Conv2d(Module):
    """2-D convolution; weight (out_channels, in_channels, kh, kw), torch's default init."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, dtype=None):
        super().__init__()
        if groups != 1:
            raise ValueError(f"Conv2d supports only groups=1, got groups={groups!r}")
        dtype = _dtype(dtype)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = F._pair(kernel_size, "kernel_size", 1)
        self.stride = F._pair(stride, "stride", 1)
        self.padding = F._pair(padding, "padding", 0)
        self.dilation = F._pair(dilation, "dilation", 1)
        fan_in = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
        self.weight = _uniform((self.out_channels, self.in_channels) + self.kernel_size, bound, dtype)
        if bias:
            self.bias = _uniform((self.out_channels,), bound, dtype)
        else:
            self.register_parameter("bias", None)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.count_include_pad = count_include_pad

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding,
                            count_include_pad=self.count_include_pad)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class ReLU(Module):
    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        return F.relu(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Identity(Module):
    def forward(self, x):
        return x


class Dropout(Module):
    """Elementwise dropout with probability ``p``, active in training mode only."""

    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        F._check_p(p)
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Channel-wise dropout of (N, C, H, W) input, active in training mode only."""

    def forward(self, x):
        return F.dropout2d(x, self.p, self.training)


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)


class BatchNorm2d(Module):
    """Batch normalisation over (N, C, H, W) input, as ``torch.nn.BatchNorm2d``.

    Parameters ``weight`` (ones) and ``bias`` (zeros) when ``affine``; buffers
    ``running_mean``, ``running_var`` and ``num_batches_tracked`` (int64) when
    ``track_running_stats``, with torch's state_dict keys. ``momentum=None``
    uses the cumulative average, as in torch.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=None):
        super().__init__()
        dtype = _dtype(dtype)
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(np.ones(self.num_features, dtype))
            self.bias = Parameter(np.zeros(self.num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype))
            self.register_buffer("running_var", np.ones(self.num_features, dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d({self.num_features}) expects input (N, {self.num_features}, H, W), "
                             f"got shape {x.shape}")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if self.momentum is None:  # cumulative moving average, as torch
                factor = 1.0 / float(self.num_batches_tracked)
        batch_stats = self.training or self.running_mean is None
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            batch_stats, factor, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class Warp(Module):
    """Warp an image by a displacement field in pixels: ``forward(input, displacement)``
    is :func:`stn_numba.nn.functional.warp` (MONAI's ``Warp``, voxelmorph's
    ``SpatialTransformer``, with the offsets kept relative into the kernel).

    Parameters
    ----------
    mode, padding_mode, align_corners, fill_value
        As in :func:`stn_numba.warp`.
    """

    def __init__(self, mode="bilinear", padding_mode="zeros", align_corners=False, fill_value=0.0):
        super().__init__()
        self.mode, self.padding_mode, self.align_corners, self.fill_value = (mode, padding_mode, align_corners,
                                                                           fill_value)

    def forward(self, input, displacement):
        return F.warp(input, displacement, self.mode, self.padding_mode, self.align_corners,
                      fill_value=self.fill_value)


class IntegrateVelocity(Module):
    """A stationary velocity field to a displacement field by scaling and
    squaring: :func:`stn_numba.nn.functional.integrate_velocity` (MONAI's
    ``DVF2DDF``, voxelmorph's ``VecInt``).

    Parameters
    ----------
    steps, mode, padding_mode, align_corners
        As in :func:`stn_numba.integrate_velocity`.
    """

    def __init__(self, steps=7, mode="bilinear", padding_mode="zeros", align_corners=False):
        super().__init__()
        self.steps, self.mode, self.padding_mode, self.align_corners = steps, mode, padding_mode, align_corners

    def forward(self, velocity):
        return F.integrate_velocity(velocity, self.steps, self.mode, self.padding_mode, self.align_corners)
