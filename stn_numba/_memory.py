"""Process-wide allocator settings for long training loops."""

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX).
_LARGEST_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 512 * 1024 * 1024

_done = False


def reuse_freed_memory():
    """Have glibc keep freed blocks of up to 32 MiB for reuse instead of returning them to the OS.

    A training step allocates and frees the same large arrays every time
    (activations and their gradients; 9.4 MB for the demo CNN's first layer).
    By default glibc maps each such array afresh and the kernel zero-fills
    its pages on first touch: on the demo's CNN step (2 cores) that took
    about a quarter of the step. Freed memory then stays with the process,
    bounded by the loop's peak use. Linux with glibc only; elsewhere, and on
    later calls, nothing happens. Returns whether the settings were applied.
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
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST_MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                                        _TRIM_THRESHOLD))
    return _done
