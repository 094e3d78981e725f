"""A small reverse-mode autodiff tape over whole NumPy arrays.

A :class:`Tensor` wraps an ndarray. Every differentiable operation is a
:class:`Function` (in the style of early tinygrad): ``forward`` computes on
ndarrays and saves on its instance (the *context*) only what ``backward`` needs;
``backward`` turns the gradient of the output into gradients of the inputs that
need one. :meth:`Tensor.backward` walks the graph in reverse topological order
and sums the gradients of a tensor used more than once.

Dtypes: float32 and float64 are kept as they are. A Python or NumPy scalar, or
an integer array, takes the dtype of the tensor it meets (it never promotes
float32 to float64); mixing float32 and float64 tensors is a TypeError.

Random numbers (parameter initialisation, dropout) come from one module-level
``numpy.random.Generator``; :func:`manual_seed` reseeds it.

Differences from torch: gradients of non-leaf tensors are not kept
(``retain_grad`` does not exist); no in-place operations on tensors that are
part of a graph. As in torch, :meth:`Tensor.backward` frees the arrays the
graph saved unless ``retain_graph=True``.

Memory: the convolution, pooling and ReLU layers take their outputs and
gradients from a per-thread pool of buffers that are reused once no array
refers to them (:mod:`stn_numba._memory`), so a training loop does not have
the OS map and zero-fill the same megabytes every step. The pool keeps up to
1 GiB a thread; :func:`empty_cache` hands its idle buffers back.
"""

import contextlib
import threading
from collections import namedtuple

import numpy as np

from . import _memory
from ._memory import empty_cache
from ._threading import single_threaded_blas

__all__ = [
    "Tensor",
    "Function",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "manual_seed",
    "default_generator",
    "empty_cache",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# ---------------------------------------------------------------- global state

_state = threading.local()


def is_grad_enabled():
    """Return True unless inside :class:`no_grad`."""
    return getattr(_state, "grad_enabled", True)


class _GradMode(contextlib.ContextDecorator):
    enabled = True

    def __enter__(self):
        self._previous = is_grad_enabled()
        _state.grad_enabled = self.enabled

    def __exit__(self, *exc):
        _state.grad_enabled = self._previous
        return False


class no_grad(_GradMode):
    """Context manager (or decorator) in which operations record no graph.

    Results computed inside have ``requires_grad=False``, as with
    ``torch.no_grad``. Use it for evaluation and for in-place parameter updates.
    """

    enabled = False


class enable_grad(_GradMode):
    """Context manager (or decorator) that turns recording back on inside :class:`no_grad`."""

    enabled = True


_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed the generator used for parameter initialisation and dropout.

    Parameters
    ----------
    seed : int
        Any seed accepted by ``numpy.random.default_rng``.

    Returns
    -------
    numpy.random.Generator
        The new default generator.
    """
    global _generator
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator():
    """Return the ``numpy.random.Generator`` used for initialisation and dropout."""
    return _generator


# ---------------------------------------------------------------- helpers


def _unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched to reach ``shape``."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape)


def _check_dtype_pair(a, b, what):
    if a.dtype != b.dtype and a.dtype in _FLOAT_DTYPES and b.dtype in _FLOAT_DTYPES:
        raise TypeError(
            f"{what}: operands have dtypes {a.dtype} and {b.dtype}; stn_numba never promotes "
            f"silently, convert one of them explicitly (e.g. with .astype)")


def _lift(value, like):
    """Turn an operand into a Tensor; scalars and integer arrays take ``like``'s dtype."""
    if isinstance(value, Tensor):
        _check_dtype_pair(like, value, "arithmetic")
        return value
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"cannot combine a Tensor with an object of type {type(value).__name__}")
    weak = array.ndim == 0 or array.dtype.kind in "biu"
    if weak and like.dtype in _FLOAT_DTYPES:
        array = array.astype(like.dtype)
    else:
        _check_dtype_pair(like, array, "arithmetic")
    return Tensor(array)


def _normalise_axis(dim, ndim, name="dim"):
    """Return ``dim`` as a tuple of non-negative axes (None means all)."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if np.isscalar(dim) else tuple(dim)
    out = []
    for d in dims:
        d = int(d)
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise ValueError(f"{name}={dim} is out of range for a tensor with {ndim} dimensions")
        out.append(d % max(ndim, 1))
    return tuple(out)


# ---------------------------------------------------------------- Function


class Function:
    """A node of the graph; its instance is the context shared by forward and backward.

    Subclasses implement ``forward(self, *arrays, **options) -> ndarray`` and
    ``backward(self, grad_output) -> gradient or tuple of gradients`` (one per
    Tensor input, None where ``self.needs_input_grad`` is False). Call them with
    :meth:`apply`, never directly.

    Attributes
    ----------
    parents : tuple of Tensor
        The Tensor inputs, in order.
    needs_input_grad : tuple of bool
        Whether each input needs a gradient; ``backward`` computes only those.
    single_threaded_blas : bool
        Class attribute: run ``forward`` and ``backward`` with BLAS on one
        thread (:func:`stn_numba._threading.single_threaded_blas`). Set on the
        matrix products: the kernels around them run on Numba's threads, and
        a threaded BLAS leaves its own threads spinning after each call,
        taking the cores from Numba's (measured on the tutorial's training
        step, 2 cores: 44 ms with two BLAS threads, 11 ms with one).
    """

    single_threaded_blas = False

    def __init__(self, *parents):
        self.parents = parents
        self.needs_input_grad = tuple(p.requires_grad for p in parents)

    def forward(self, *arrays, **options):
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} has no backward")

    def _blas_threads(self):
        return single_threaded_blas() if self.single_threaded_blas else contextlib.nullcontext()

    def release(self):
        """Drop the arrays saved for backward (called after backward unless the graph is retained)."""
        kept = {"parents": self.parents, "needs_input_grad": self.needs_input_grad, "released": True}
        self.__dict__.clear()
        self.__dict__.update(kept)

    @classmethod
    def apply(cls, *inputs, **options):
        """Run ``forward`` on the inputs' arrays and record the node if a gradient is needed.

        Positional arguments must be Tensors; everything else goes in keywords.
        """
        for i, t in enumerate(inputs):
            if not isinstance(t, Tensor):
                raise TypeError(f"{cls.__name__}: positional input {i} must be a Tensor, "
                                f"got {type(t).__name__}")
        ctx = cls(*inputs)
        with ctx._blas_threads():
            output = Tensor(ctx.forward(*(t.data for t in inputs), **options))
        if is_grad_enabled() and any(ctx.needs_input_grad):
            output.requires_grad = True
            output._ctx = ctx
        return output


# ---------------------------------------------------------------- Tensor


class Tensor:
    """An ndarray with an optional gradient and the graph node that produced it.

    Parameters
    ----------
    data : array_like
        The values. Lists and scalars become ndarrays as ``np.asarray`` makes them;
        a Tensor is unwrapped (the array is shared, not copied).
    requires_grad : bool, optional
        Whether :meth:`backward` should compute ``.grad`` for this tensor.
        Only float32 and float64 tensors can require a gradient.

    Attributes
    ----------
    data : ndarray
        The values.
    grad : ndarray or None
        The accumulated gradient, for leaf tensors that require one.
    requires_grad : bool
    """

    # Make NumPy defer to Tensor's reflected operators (ndarray + Tensor -> Tensor).
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        data = np.asarray(data)
        if data.dtype == object:
            raise TypeError("Tensor data must be a numeric array, got an object array")
        self.data = data
        self.grad = None
        self._ctx = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # -------------------------------------------------- properties

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    def numel(self):
        """The number of elements."""
        return self.data.size

    @property
    def is_leaf(self):
        """True for tensors created by the user rather than by an operation."""
        return self._ctx is None

    @property
    def T(self):
        return self.permute(*reversed(range(self.ndim)))

    def size(self, dim=None):
        """The shape (torch's ``size()``), or the length of one dimension."""
        return self.shape if dim is None else self.shape[dim]

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, prefix='Tensor(')}, dtype={self.dtype}{grad})"

    def numpy(self):
        """Return the underlying array (shared, not copied)."""
        return self.data

    def item(self):
        """Return the single value as a Python scalar."""
        return self.data.item()

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` in place and return self."""
        if requires_grad and self.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"only float32 and float64 tensors can require a gradient, "
                            f"this one is {self.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def detach(self):
        """Return a Tensor sharing the data, cut from the graph."""
        return Tensor(self.data)

    def astype(self, dtype):
        """Differentiable cast to another float dtype (the explicit way to mix precisions)."""
        return Cast.apply(self, dtype=np.dtype(dtype))

    # -------------------------------------------------- backward

    def backward(self, grad=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into ``.grad`` of every leaf that requires it.

        Parameters
        ----------
        grad : array_like, optional
            The gradient of some scalar with respect to this tensor. May be
            omitted for a one-element tensor (it is then 1).
        retain_graph : bool, optional
            Keep the arrays the graph saved, so that it can be backpropagated
            again. By default they are freed as the backward pass goes, as in torch.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad "
                               "(no input of its graph has requires_grad=True)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"grad can be omitted only for one-element outputs; "
                                   f"this tensor has shape {self.shape}")
            grad = np.ones_like(self.data)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad)
            if grad.shape != self.shape:
                raise ValueError(f"grad has shape {grad.shape}, expected {self.shape}")
            grad = grad.astype(self.dtype, copy=False)

        grads = {id(self): grad}
        for node in reversed(self._topological_order()):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._ctx is None:
                # Leaf: a fresh array, so later accumulation never writes into another's gradient.
                node.grad = g.copy() if node.grad is None else node.grad + g
                continue
            ctx = node._ctx
            if getattr(ctx, "released", False):
                raise RuntimeError("backward through a graph a second time: its saved arrays were freed by "
                                   "the first backward; pass retain_graph=True to the first one")
            with ctx._blas_threads():
                parent_grads = ctx.backward(g)
            if not retain_graph:
                ctx.release()
            if not isinstance(parent_grads, tuple):
                parent_grads = (parent_grads,)
            for parent, needed, pg in zip(ctx.parents, ctx.needs_input_grad, parent_grads):
                if not needed or pg is None:
                    continue
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg

    def _topological_order(self):
        """Tensors of the graph that need a gradient, each after all of its inputs (iterative DFS)."""
        order, visited = [], set()
        stack = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            if node._ctx is not None:
                for parent in node._ctx.parents:
                    if parent.requires_grad and id(parent) not in visited:
                        stack.append((parent, False))
        return order

    # -------------------------------------------------- arithmetic

    def __add__(self, other):
        return Add.apply(self, _lift(other, self))

    def __radd__(self, other):
        return Add.apply(_lift(other, self), self)

    def __sub__(self, other):
        return Sub.apply(self, _lift(other, self))

    def __rsub__(self, other):
        return Sub.apply(_lift(other, self), self)

    def __mul__(self, other):
        return Mul.apply(self, _lift(other, self))

    def __rmul__(self, other):
        return Mul.apply(_lift(other, self), self)

    def __truediv__(self, other):
        return Div.apply(self, _lift(other, self))

    def __rtruediv__(self, other):
        return Div.apply(_lift(other, self), self)

    def __neg__(self):
        return Neg.apply(self)

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            return Pow.apply(self, _lift(exponent, self))
        if np.ndim(exponent) == 0:
            return PowScalar.apply(self, exponent=exponent)
        return Pow.apply(self, _lift(exponent, self))

    def __rpow__(self, base):
        return Pow.apply(_lift(base, self), self)

    def __matmul__(self, other):
        return matmul(self, _lift(other, self))

    def __rmatmul__(self, other):
        return matmul(_lift(other, self), self)

    def __getitem__(self, index):
        return Index.apply(self, index=_unwrap_index(index))

    # -------------------------------------------------- methods (torch names)

    def sum(self, dim=None, keepdim=False):
        return Sum.apply(self, axis=_normalise_axis(dim, self.ndim), keepdim=keepdim)

    def mean(self, dim=None, keepdim=False):
        axes = _normalise_axis(dim, self.ndim)
        count = int(np.prod([self.shape[a] for a in axes])) if self.ndim else 1
        return self.sum(dim, keepdim) / count

    def max(self, dim=None, keepdim=False):
        """Like ``torch.max``: the maximum (ties share the gradient) or, with
        ``dim``, a ``(values, indices)`` pair routing the gradient to the first maximum."""
        if dim is None:
            return Max.apply(self)
        (axis,) = _normalise_axis(dim, self.ndim)
        indices = np.expand_dims(np.argmax(self.data, axis=axis), axis)
        values = TakeAlongAxis.apply(self, indices=indices, axis=axis)
        if not keepdim:
            values = values.reshape(*(n for i, n in enumerate(values.shape) if i != axis))
            indices = np.squeeze(indices, axis)
        return MaxResult(values, indices)

    def exp(self):
        return Exp.apply(self)

    def log(self):
        return Log.apply(self)

    def relu(self):
        return ReLU.apply(self)

    def tanh(self):
        return Tanh.apply(self)

    def sigmoid(self):
        return Sigmoid.apply(self)

    def reshape(self, *shape):
        shape = tuple(shape[0]) if len(shape) == 1 and not np.isscalar(shape[0]) else shape
        return Reshape.apply(self, shape=tuple(int(s) for s in shape))

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        start, end = _normalise_axis((start_dim, end_dim), self.ndim)
        if start > end:
            raise ValueError(f"flatten: start_dim={start_dim} comes after end_dim={end_dim}")
        shape = self.shape[:start] + (-1,) + self.shape[end + 1:]
        return self.reshape(shape)

    def permute(self, *dims):
        dims = tuple(dims[0]) if len(dims) == 1 and not np.isscalar(dims[0]) else dims
        axes = _normalise_axis(dims, self.ndim)
        if sorted(axes) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of {self.ndim} axes")
        return Permute.apply(self, axes=axes)

    def transpose(self, dim0, dim1):
        """Swap two dimensions (torch semantics, not NumPy's)."""
        a, b = _normalise_axis((dim0, dim1), self.ndim)
        axes = list(range(self.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return Permute.apply(self, axes=tuple(axes))


MaxResult = namedtuple("MaxResult", ["values", "indices"])


def _unwrap_index(index):
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


# ---------------------------------------------------------------- elementwise


class Cast(Function):
    def forward(self, x, dtype):
        if dtype not in _FLOAT_DTYPES:
            raise TypeError(f"astype: dtype must be float32 or float64, got {dtype}")
        self.input_dtype = x.dtype
        return x.astype(dtype)

    def backward(self, grad):
        return grad.astype(self.input_dtype)


class _Binary(Function):
    """Broadcasting binary op: remembers the input shapes to un-broadcast gradients."""

    def forward(self, a, b):
        self.shapes = (a.shape, b.shape)
        return self.compute(a, b)

    def backward(self, grad):
        ga, gb = self.gradients(grad)
        return (None if ga is None else _unbroadcast(ga, self.shapes[0]),
                None if gb is None else _unbroadcast(gb, self.shapes[1]))


class Add(_Binary):
    def compute(self, a, b):
        return a + b

    def gradients(self, grad):
        return (grad if self.needs_input_grad[0] else None,
                grad if self.needs_input_grad[1] else None)


class Sub(_Binary):
    def compute(self, a, b):
        return a - b

    def gradients(self, grad):
        return (grad if self.needs_input_grad[0] else None,
                -grad if self.needs_input_grad[1] else None)


class Mul(_Binary):
    def compute(self, a, b):
        self.a = a if self.needs_input_grad[1] else None
        self.b = b if self.needs_input_grad[0] else None
        return a * b

    def gradients(self, grad):
        return (grad * self.b if self.needs_input_grad[0] else None,
                grad * self.a if self.needs_input_grad[1] else None)


class Div(_Binary):
    def compute(self, a, b):
        self.b = b
        out = a / b
        self.out = out if self.needs_input_grad[1] else None
        return out

    def gradients(self, grad):
        ga = grad / self.b
        return (ga if self.needs_input_grad[0] else None,
                -ga * self.out if self.needs_input_grad[1] else None)


class Pow(_Binary):
    """``a ** b`` with a tensor exponent; d/db = a**b · log a (NaN for a < 0, as in torch)."""

    def compute(self, a, b):
        self.a, self.b = a, b
        self.out = a ** b
        return self.out

    def gradients(self, grad):
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = grad * self.b * self.a ** (self.b - 1)
        if self.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                gb = grad * self.out * np.log(self.a)
        return ga, gb


class PowScalar(Function):
    def forward(self, x, exponent):
        self.x = x
        self.exponent = np.asarray(exponent).astype(x.dtype)
        return x ** self.exponent

    def backward(self, grad):
        return grad * self.exponent * self.x ** (self.exponent - 1)


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, grad):
        return -grad


class Exp(Function):
    def forward(self, x):
        self.out = np.exp(x)
        return self.out

    def backward(self, grad):
        return grad * self.out


class Log(Function):
    def forward(self, x):
        self.x = x
        return np.log(x)

    def backward(self, grad):
        return grad / self.x


class ReLU(Function):
    # (outputs from the reuse pool, as the convolutions' and poolings' that it follows)
    def forward(self, x):
        out = np.maximum(x, 0, out=_memory.empty(x.shape, x.dtype))
        self.positive = np.greater(out, 0, out=_memory.empty(x.shape, np.bool_))
        return out

    def backward(self, grad):
        return np.multiply(grad, self.positive, out=_memory.empty(grad.shape, grad.dtype))


class Tanh(Function):
    def forward(self, x):
        self.out = np.tanh(x)
        return self.out

    def backward(self, grad):
        return grad * (1 - self.out * self.out)


class Sigmoid(Function):
    def forward(self, x):
        # exp of a non-positive number only: no overflow warning for large |x|.
        e = np.exp(-np.abs(x))
        self.out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        return self.out

    def backward(self, grad):
        return grad * self.out * (1 - self.out)


# ---------------------------------------------------------------- reductions


class Sum(Function):
    def forward(self, x, axis, keepdim):
        self.shape, self.axis, self.keepdim = x.shape, axis, keepdim
        return np.asarray(x.sum(axis=axis, keepdims=keepdim))

    def backward(self, grad):
        if not self.keepdim:
            grad = np.expand_dims(grad, self.axis)
        return np.broadcast_to(grad, self.shape).copy()


class Max(Function):
    """Maximum of all elements; tied maxima share the gradient equally (as torch's ``max()``)."""

    def forward(self, x):
        self.x = x
        self.out = np.asarray(x.max())
        return self.out

    def backward(self, grad):
        mask = self.x == self.out
        return grad * mask / mask.sum().astype(grad.dtype)


class TakeAlongAxis(Function):
    def forward(self, x, indices, axis):
        self.shape, self.indices, self.axis = x.shape, indices, axis
        return np.take_along_axis(x, indices, axis)

    def backward(self, grad):
        out = np.zeros(self.shape, grad.dtype)
        np.put_along_axis(out, self.indices, grad, self.axis)
        return out


# ---------------------------------------------------------------- shape


class Reshape(Function):
    def forward(self, x, shape):
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape)


class Permute(Function):
    def forward(self, x, axes):
        self.inverse = tuple(np.argsort(axes))
        return x.transpose(axes)

    def backward(self, grad):
        return grad.transpose(self.inverse)


def _is_basic_index(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer)) for p in parts)


class Index(Function):
    def forward(self, x, index):
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        return np.asarray(x[index])

    def backward(self, grad):
        out = np.zeros(self.shape, grad.dtype)
        if _is_basic_index(self.index):
            out[self.index] = grad
        else:  # advanced indices may repeat: accumulate
            np.add.at(out, self.index, grad)
        return out


class Concat(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        self.splits = np.cumsum([a.shape[axis] for a in arrays])[:-1]
        return np.concatenate(arrays, axis=axis)

    def backward(self, grad):
        return tuple(np.split(grad, self.splits, axis=self.axis))


class MatMul(Function):
    """``a @ b`` for arrays of 2 or more dimensions (batch dimensions broadcast)."""

    single_threaded_blas = True

    def forward(self, a, b):
        self.a = a if self.needs_input_grad[1] else None
        self.b = b if self.needs_input_grad[0] else None
        self.shapes = (a.shape, b.shape)
        return np.matmul(a, b)

    def backward(self, grad):
        ga = gb = None
        if self.needs_input_grad[0]:
            ga = _unbroadcast(np.matmul(grad, np.swapaxes(self.b, -1, -2)), self.shapes[0])
        if self.needs_input_grad[1]:
            gb = _unbroadcast(np.matmul(np.swapaxes(self.a, -1, -2), grad), self.shapes[1])
        return ga, gb


def matmul(a, b):
    """Matrix product with torch/NumPy semantics, including 1-D operands."""
    if not isinstance(a, Tensor):
        a = _lift(a, b)
    if not isinstance(b, Tensor):
        b = _lift(b, a)
    _check_dtype_pair(a, b, "matmul")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: both operands need at least one dimension")
    a2 = a.reshape(1, a.shape[0]) if a.ndim == 1 else a
    b2 = b.reshape(b.shape[0], 1) if b.ndim == 1 else b
    out = MatMul.apply(a2, b2)
    if b.ndim == 1:
        out = out.reshape(out.shape[:-1])
    if a.ndim == 1:
        out = out.reshape(out.shape[:-2] + out.shape[-1:])
    return out
