"""Memory for training loops: a reuse pool for the tape's large arrays, and glibc's settings.

A training step allocates and frees the same large arrays every time
(activations, their gradients, the kernels' partial sums). glibc returns
such blocks to the OS when they are freed, and the kernel zero-fills their
pages again on first touch: on the Table-1 CNN's step (batch 64, 42×42,
2 cores) that was 4,500 page faults a step and a quarter of its CPU time.

`empty` gives the convolution, pooling and ReLU layers of the tape their
outputs and work arrays from a pool of buffers, one pool per thread. A
buffer is handed out again once nothing refers to it: every NumPy view of
an array made from a buffer keeps a reference to the buffer itself (NumPy
points a view's ``base`` at the array that owns the memory), so its
reference count tells whether any array made from it is still alive.
Arrays from the pool behave as those of ``np.empty``; the pool only keeps
their memory for the next one of the same size. It holds at most
:data:`POOL_BYTES` a thread, dropping the buffers used least recently
first; `empty_cache` gives it all back.
"""

import ctypes
import ctypes.util
import math
import sys
import threading

import numpy as np

#: Smallest array the pool keeps (smaller ones are reused by malloc without page faults).
POOL_SMALLEST = 1 << 16
#: Most bytes the pool of one thread keeps.
POOL_BYTES = 1 << 30

_pools = threading.local()


class _Pool:
    """One thread's buffers: uint8 arrays, each the owner of its memory, by size in bytes."""

    def __init__(self):
        self.buffers = {}  # nbytes -> [buffer]
        self.last_use = {}  # id(buffer) -> clock at its last hand-out
        self.clock = 0
        self.nbytes = 0

    def take(self, nbytes):
        """An idle or new buffer of ``nbytes`` bytes, or None if the pool is full."""
        self.clock += 1
        buffers = self.buffers.setdefault(nbytes, [])
        idle = _idle(buffers)
        if idle:
            buffer = idle[0]
        elif self._make_room(nbytes):
            buffer = np.empty(nbytes, np.uint8)
            buffers.append(buffer)
            self.nbytes += nbytes
        else:
            return None
        self.last_use[id(buffer)] = self.clock
        return buffer

    def _make_room(self, nbytes):
        """Drop idle buffers, least recently used first, until ``nbytes`` more fit; whether they do."""
        if self.nbytes + nbytes <= POOL_BYTES:
            return True
        idle = sorted(((self.last_use[id(b)], size, b) for size, buffers in self.buffers.items()
                       for b in _idle(buffers)), key=lambda entry: entry[:2])
        for _, size, buffer in idle:
            self.buffers[size] = [b for b in self.buffers[size] if b is not buffer]
            del self.last_use[id(buffer)]
            self.nbytes -= size
            if self.nbytes + nbytes <= POOL_BYTES:
                return True
        return False


def _reference_counts(buffers):
    """The reference count of each buffer of the list ``buffers``."""
    return [sys.getrefcount(buffer) for buffer in buffers]


# What `_reference_counts` gives for a buffer that only its list holds (measured rather than
# assumed: interpreters differ in the references their frames hold).
_IDLE_REFERENCES = _reference_counts([np.empty(1, np.uint8)])[0]


def _idle(buffers):
    """The buffers of the list ``buffers`` that no array refers to."""
    return [buffer for buffer, count in zip(buffers, _reference_counts(buffers)) if count == _IDLE_REFERENCES]


def _pool():
    pool = getattr(_pools, "pool", None)
    if pool is None:
        pool = _pools.pool = _Pool()
    return pool


def empty(shape, dtype):
    """``np.empty(shape, dtype)`` (C order), its memory reused from this thread's pool when large."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    buffer = _pool().take(nbytes) if nbytes >= POOL_SMALLEST else None
    return np.empty(shape, dtype) if buffer is None else buffer.view(dtype).reshape(shape)


def empty_cache():
    """Release the buffers the calling thread's pool keeps for reuse (the memory of arrays still
    in use stays with them, and goes back to the OS when they are freed)."""
    _pools.pool = _Pool()


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX).
LARGEST_MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 512 * 1024 * 1024

_done = False


def reuse_freed_memory():
    """Have glibc keep freed blocks of up to 32 MiB for reuse instead of returning them to the OS.

    For what the pool does not cover (the data pipeline's and NumPy's other
    temporaries) in the long training runs of :mod:`stn_numba.experiments`.
    Freed memory then stays with the process, bounded by the loop's peak use.
    Linux with glibc only; elsewhere, and on later calls, nothing happens.
    Returns whether the settings were applied.
    """
    global _done
    if _done or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    _done = bool(mallopt(_M_MMAP_THRESHOLD, LARGEST_MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                                        TRIM_THRESHOLD))
    return _done
