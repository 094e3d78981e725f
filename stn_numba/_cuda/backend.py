"""The CUDA backend: GPU arrays in, GPU arrays out, all work on one stream.

Accepted arrays, none of them copied:

- numba device arrays (and the CUDA simulator's ``FakeCUDAArray``);
- anything with ``__cuda_array_interface__`` (CuPy arrays, torch CUDA tensors),
  viewed with ``numba.cuda.as_cuda_array``;
- anything with a CUDA ``__dlpack__`` (e.g. JAX arrays), viewed through
  ``cuda.core``'s ``StridedMemoryView``.

Host arrays are copied to the GPU only when the caller asked for
``device="cuda"``. Results are numba device arrays; they expose
``__cuda_array_interface__``, so ``cupy.asarray(result)`` and
``torch.as_tensor(result, device="cuda")`` view them without a copy.
"""

import functools

import numpy as np

from .._arrays import is_device_array

INSTALL_HINT = "pip install stn-numba[cuda]"


class CudaUnavailableError(RuntimeError):
    """The GPU was asked for, but numba-cuda, a CUDA driver or a GPU is missing."""


@functools.cache
def numba_cuda():
    """The ``numba.cuda`` module, once it is known to have a usable GPU (or the simulator)."""
    try:
        from numba import cuda
    except ImportError as error:
        raise CudaUnavailableError(
            f"GPU arrays or device='cuda' need numba-cuda, which is not installed ({error}); "
            f"install it with: {INSTALL_HINT}") from error
    if not cuda.is_available():
        raise CudaUnavailableError(
            "GPU arrays or device='cuda' need a CUDA GPU and its driver, but numba-cuda found none "
            "(numba.cuda.detect() says why); use NumPy arrays to run on the CPU")
    return cuda


def _stream(cuda, stream):
    if stream is None:
        return 0  # the default stream
    if isinstance(stream, type(cuda.default_stream())):
        return stream
    raise TypeError(
        "stream must be None or a numba CUDA stream (numba.cuda.stream(); for a CuPy or torch stream "
        f"use numba.cuda.external_stream(pointer)), got {type(stream).__name__} {stream!r}")


@functools.lru_cache(maxsize=8)
def _kernels_on(stream):
    """A `stn_numba._kernels.Kernels` of launchers bound to ``stream``, made once per stream
    (every GPU call builds a backend; binding ~40 launchers took 31 us)."""
    from .kernels import KERNELS

    return KERNELS.map(lambda launcher: functools.partial(launcher, stream=stream))


class CudaBackend:
    """Runs ops with the ``@cuda.jit`` kernels of ``stn_numba._cuda`` on ``stream``.

    Parameters
    ----------
    stream : numba CUDA stream or None
        Every allocation, copy and launch goes to this stream; None is the
        default stream. Nothing synchronises: results are ready once the
        stream has reached them, as for any CUDA work.
    """

    def __init__(self, stream=None):
        self._cuda = numba_cuda()
        self.stream = _stream(self._cuda, stream)
        self.kernels = _kernels_on(self.stream)

    def as_array(self, value, name):
        """``value`` as a numba device array: GPU arrays viewed in place, host arrays copied."""
        cuda = self._cuda
        if getattr(value, "__cuda_ndarray__", False):  # numba device array, simulator's FakeCUDAArray
            array = value
        elif hasattr(value, "__cuda_array_interface__"):
            if not hasattr(cuda, "as_cuda_array"):
                raise TypeError(f"{name}: the CUDA simulator cannot view __cuda_array_interface__ arrays; "
                                "pass a numba device array")
            array = cuda.as_cuda_array(value)
        elif is_device_array(value):
            array = self._from_dlpack(value, name)
        else:
            host = np.asarray(value)
            if host.dtype.kind not in "biuf":
                raise TypeError(f"{name} must have dtype float32 or float64, got {host.dtype}")
            host = np.ascontiguousarray(host, dtype=host.dtype.newbyteorder("="))
            array = cuda.to_device(host, stream=self.stream)
        if not array.dtype.isnative:
            raise TypeError(f"{name} is a GPU array in non-native byte order ({array.dtype}), which GPU "
                            "kernels cannot read; convert it to native float32 or float64 first")
        return array

    def _from_dlpack(self, value, name):
        """A zero-copy device array over a CUDA DLPack tensor that lacks ``__cuda_array_interface__``."""
        try:
            from cuda.core.utils import StridedMemoryView
        except ImportError as error:
            raise TypeError(f"{name} is a CUDA DLPack tensor without __cuda_array_interface__; viewing it "
                            "needs the cuda-core package (pip install cuda-core)") from error
        # As numba-cuda does for DLPack kernel arguments: order after our stream.
        view = StridedMemoryView.from_dlpack(value, stream_ptr=getattr(self.stream, "handle", self.stream))
        dtype = np.dtype(view.dtype)
        strides = None if view.strides is None else tuple(s * dtype.itemsize for s in view.strides)
        interface = {"version": 3, "shape": tuple(view.shape), "strides": strides,
                     "typestr": dtype.str, "data": (view.ptr, view.readonly)}
        return self._cuda.from_cuda_array_interface(interface, owner=view, sync=False)

    def contiguous(self, array, dtype):
        """``array`` as C-contiguous ``dtype``; copies on the GPU, and only when needed."""
        dtype = np.dtype(dtype)
        if array.dtype == dtype and array.is_c_contiguous():
            return array
        copy = self.empty(array.shape, dtype)
        if hasattr(copy, "setitem"):
            copy.setitem(slice(None), array, stream=self.stream)  # numba's strided copy kernel; it takes no Ellipsis
        else:
            copy[...] = array  # the simulator's arrays wrap NumPy arrays
        return copy

    def empty(self, shape, dtype):
        return self._cuda.device_array(tuple(shape), dtype=np.dtype(dtype), stream=self.stream)

    def zeros(self, shape, dtype):
        return self.full(shape, 0, dtype)

    def full(self, shape, value, dtype):
        array = self.empty(shape, dtype)
        if array.size:
            from .sampling import fill

            fill(array, value, stream=self.stream)
        return array
