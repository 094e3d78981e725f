"""``@cuda.jit`` twins of the CPU kernels, for GPU arrays.

:mod:`.backend` turns arguments into device arrays and hands out the host-side
launchers of :mod:`.grids` and :mod:`.sampling`, which have the CPU kernels'
names and argument order plus the stream they launch on. Importing this
package imports nothing from numba.cuda, so ``import stn_numba`` works without
numba-cuda, a driver or a GPU; only asking for the GPU does not.

Launch configuration: every launcher starts ``THREADS_PER_BLOCK`` threads per
block (environment variable ``STN_NUMBA_CUDA_THREADS``, default 256), read at
launch time, so tests under the slow CUDA simulator can lower it. Nothing
deterministic depends on it: every reduction sums in an order fixed by the
shapes alone (only the atomic ``grad_input`` varies, from run to run).
"""

import os


def _threads_per_block(text):
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if not 1 <= threads <= 1024:
        raise ValueError(f"STN_NUMBA_CUDA_THREADS must be an integer from 1 to 1024 (threads per CUDA block), "
                         f"got {text!r}")
    return threads


THREADS_PER_BLOCK = _threads_per_block(os.environ.get("STN_NUMBA_CUDA_THREADS", "256"))


def blocks_for(count):
    """Blocks of ``THREADS_PER_BLOCK`` threads that cover ``count`` work items (at least 1)."""
    return max(1, -(-int(count) // THREADS_PER_BLOCK))


def launch(kernel, count, stream):
    """``kernel`` configured for one thread per work item, ``count`` items, on ``stream``."""
    return kernel[blocks_for(count), THREADS_PER_BLOCK, stream]
