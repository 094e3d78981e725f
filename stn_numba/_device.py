"""Host versus device arrays: which backend runs an op.

NumPy inputs run on the CPU kernels of ``_cpu``. GPU arrays (numba device
arrays, anything with ``__cuda_array_interface__`` or a CUDA ``__dlpack__``)
run on the ``_cuda`` twins and stay on the GPU. Importing this module never
imports numba.cuda: the GPU backend is loaded the first time it is needed.

Remembered calls. What validation and dispatch decide for a call on NumPy
arrays that need no copy depends only on the arrays' shapes and dtypes and
the options; a call that repeats all of them runs the kernel chosen the first
time (`remembered_key`, `run_remembered`, `remember`), without validating and
dispatching again: on small inputs a call's fixed cost is most of its time
(1x1x4x4, 2 threads: grid_sample 2.9 -> 1.6 µs; torch 1.1). Options that could
compare equal to ones validation refuses are not remembered (a size must be a
tuple of ints: one of floats compares equal to it), and the last option's type
is part of the key (``align_corners=1`` is not ``True`` to validation).
"""

import numpy as np

from . import _threading
from ._arrays import is_device_array


class CpuBackend:
    """Runs ops with the ``@njit`` kernels of ``stn_numba._cpu`` on NumPy arrays."""

    def __init__(self):
        from ._cpu.kernels import KERNELS

        self.kernels = KERNELS.map(_threading.guard)  # a `stn_numba._kernels.Kernels`

    @staticmethod
    def as_array(value, name):
        if is_device_array(value):
            raise ValueError(f"{name} is a GPU array but the op runs on the CPU; "
                             "pass only host arrays, or only GPU arrays, or device='cuda'")
        return np.asarray(value)

    @staticmethod
    def contiguous(array, dtype):
        """``array`` as C-contiguous, native-endian, writeable ``dtype``; copies only when needed.

        Read-only arrays are copied too: Numba would otherwise compile a second
        specialisation of every kernel for them.
        """
        flags = array.flags
        if array.dtype == dtype and flags.c_contiguous and flags.writeable and flags.aligned:
            return array  # the common case, without np.require's cost
        return np.require(array, dtype, ["C", "A", "W"])

    @staticmethod
    def empty(shape, dtype):
        return np.empty(shape, dtype=dtype)

    @staticmethod
    def forward_runner(fused, shape, out_shape, dtype, mode, padding_mode, align_corners):
        """`runner` for a forward sampler, with the kernel it selects for an
        input of ``shape`` chosen now (see `stn_numba._cpu.sampling.forward_runner`)."""
        from ._cpu import sampling

        return _threading.guard(sampling.forward_runner(fused, shape, out_shape, dtype, mode, padding_mode,
                                                        align_corners))

    @staticmethod
    def runner(kernel, output_shapes, dtype, *options):
        """A function of an op's arrays, as the kernels take them, that
        allocates its one or two outputs and runs ``kernel`` (one of
        ``kernels``) on them with ``options``; it returns the output, or the
        pair of them: what `remember` keeps for calls like the one that made
        these choices."""
        if len(output_shapes) == 1:
            (shape,) = output_shapes

            def run(*arrays):
                output = np.empty(shape, dtype)
                kernel(*arrays, output, *options)
                return output
        else:
            first_shape, second_shape = output_shapes

            def run(*arrays):
                first, second = np.empty(first_shape, dtype), np.empty(second_shape, dtype)
                kernel(*arrays, first, second, *options)
                return first, second

        return run

    @staticmethod
    def zeros(shape, dtype):
        return np.zeros(shape, dtype=dtype)

    @staticmethod
    def full(shape, value, dtype):
        return np.full(shape, value, dtype=dtype)


_CPU = None


def _cpu_backend():
    global _CPU
    if _CPU is None:
        _CPU = CpuBackend()
    return _CPU


def _cuda_backend(stream):
    from ._cuda import backend

    return backend.CudaBackend(stream)


def resolve(device, stream, **arrays):
    """Pick the backend for ``arrays`` and convert them to its array type.

    Parameters
    ----------
    device : {None, "cpu", "cuda"}
        None follows the arrays: GPU arrays run on the GPU, host arrays on the CPU.
        "cuda" also moves host arrays to the GPU; the result stays there.
    stream : CUDA stream or None
        Stream for GPU work; refused for CPU work.
    **arrays
        The op's array arguments by name, in order.

    Returns
    -------
    backend, list of arrays
    """
    if stream is None and (device is None or device == "cpu"):
        values = list(arrays.values())
        for value in values:
            if type(value) is not np.ndarray:
                break
        else:  # only NumPy arrays, the common case: no further checks
            return _CPU or _cpu_backend(), values
    if device not in (None, "cpu", "cuda"):
        raise ValueError(f"device must be None, 'cpu' or 'cuda', got {device!r}")
    on_device = {name: is_device_array(value) for name, value in arrays.items()}
    if device is None and any(on_device.values()):
        if not all(on_device.values()):
            kinds = ", ".join(f"{name} is {'a GPU' if gpu else 'a host'} array" for name, gpu in on_device.items())
            raise ValueError(f"arguments must all be host arrays or all be GPU arrays, but {kinds}")
        device = "cuda"
    if device == "cuda":
        backend = _cuda_backend(stream)
    else:
        if stream is not None:
            raise ValueError("stream is only meaningful for GPU work; got a stream for a CPU op")
        backend = _cpu_backend()
    return backend, [backend.as_array(value, name) for name, value in arrays.items()]



# (op, shapes and dtypes, options, type of the last option) -> run
_remembered = {}
_REMEMBERED_CALLS = 1024  # the table starts over when full


def remembered_key(op, device, stream, arrays, *options):
    """The key of a call of ``op`` on ``arrays`` with ``options`` (the last
    one's type too), or None unless it runs on the CPU on C-contiguous,
    aligned, writeable NumPy arrays, which the kernels take as they are, and
    every tuple option (a size) holds Python ints."""
    if device is not None or stream is not None:
        return None
    for option in options:
        if isinstance(option, tuple) and not _plain_ints(option):
            return None
    key = (op, type(options[-1])) + options
    for array in arrays:
        if type(array) is not np.ndarray or not array.flags.carray:  # (C-contiguous, aligned, writeable)
            return None
        key += (array.shape, array.dtype)
    return key


def _plain_ints(values):
    """Whether every entry of ``values`` (a size) is a Python int, as a key
    may hold it (see the module docstring)."""
    for value in values:
        if type(value) is not int:
            return False
    return True


def run_remembered(key, *arrays):
    """The output of the call of ``key`` on ``arrays``, if it was remembered; else None."""
    if key is None:
        return None
    try:
        run = _remembered.get(key)
    except TypeError:  # an unhashable option: the general path takes it
        return None
    return None if run is None else run(*arrays)


def remember(key, run):
    """Remember that the call of ``key`` (a `remembered_key`, validated) gives
    its output by ``run(*arrays)`` (`CpuBackend.runner`, `CpuBackend.forward_runner`)."""
    try:
        hash(key)
    except TypeError:  # an unhashable option (valid, such as a list for a size)
        return
    if len(_remembered) >= _REMEMBERED_CALLS:
        _remembered.clear()
    _remembered[key] = run
