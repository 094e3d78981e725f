"""Numba's threading layer: stn_numba helps Numba find TBB and never overrides a user's choice.

Numba runs ``parallel=True`` kernels on one of three threading layers, chosen
once per process when the first parallel kernel runs:

=========  =================================  ===============================
layer      calls from several Python threads  calls in a child after ``fork``
=========  =================================  ===============================
tbb        safe                               safe
omp        safe                               GNU OpenMP (Linux): Numba aborts
                                              the child ("fork() called from a
                                              process already using GNU
                                              OpenMP, this is unsafe")
workqueue  Numba aborts the whole process     safe
=========  =================================  ===============================

Only TBB is safe for both, and Numba's default already tries it first. But
``pip install tbb`` puts ``libtbb.so.12`` in ``<prefix>/lib``, which the
dynamic loader does not search in a virtual environment (numba/numba#6108), so
Numba silently falls back to omp. (It is not a version constraint: Numba 0.68
needs TBB_INTERFACE_VERSION >= 12060, i.e. TBB 2021.6 or later.) Hence
stn_numba depends on ``tbb`` where it has wheels, and :func:`load_pip_tbb`,
run when stn_numba is imported, loads that library by its full path before
Numba looks for it by name. It changes nothing else: ``numba.config`` is not
touched, so ``NUMBA_THREADING_LAYER`` / ``numba.config.THREADING_LAYER`` and
the priority order set by a user are obeyed, and nothing happens when Numba
has already started its threads or a user asked for omp or workqueue.

Where Numba runs on workqueue anyway (no TBB wheel and no OpenMP runtime, as
on macOS arm64 without libomp), :func:`guard` makes the CPU kernels of the
array ops wait for each other under a process-wide lock instead of aborting.
"""

import contextlib
import ctypes
import importlib.metadata
import os
import sys
import threading

# The name under which Numba dlopens TBB on Linux
# (numba.np.ufunc.parallel._check_tbb_version_compatible). Other platforms
# keep Numba's own discovery: only the Linux path is tested.
_TBB_LIBRARY = "libtbb.so.12"
# Threading layer settings for which Numba may pick TBB.
_LAYERS_WITHOUT_TBB = ("omp", "workqueue")

_kernel_lock = threading.Lock()
_layer = None


def threads_started():
    """Whether Numba has already chosen its threading layer in this process."""
    numba = sys.modules.get("numba")
    if numba is None:
        return False
    try:
        numba.threading_layer()
    except ValueError:
        return False
    return True


def requested_layer():
    """The threading layer the user asked Numba for ("default" unless set), without importing Numba."""
    numba = sys.modules.get("numba")
    if numba is not None:
        return str(numba.config.THREADING_LAYER).lower()
    return os.environ.get("NUMBA_THREADING_LAYER", "default").lower()


def load_pip_tbb():
    """Load the ``tbb`` package's TBB library by path so that Numba's default can choose TBB.

    Returns
    -------
    str or None
        The library loaded, or None when nothing was done: not Linux, Numba's
        threads already started, a layer without TBB requested, the loader
        already finds TBB by name, or the ``tbb`` package is not installed.
    """
    if not sys.platform.startswith("linux") or threads_started():
        return None
    if requested_layer() in _LAYERS_WITHOUT_TBB:
        return None
    try:
        ctypes.CDLL(_TBB_LIBRARY)
        return None  # the loader finds a TBB by itself: Numba's choice stands
    except OSError:
        pass
    try:
        files = importlib.metadata.files("tbb") or ()
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == _TBB_LIBRARY:
            path = os.path.realpath(file.locate())
            try:
                # Once loaded, the loader resolves Numba's dlopen by name
                # (and tbbpool's DT_NEEDED) to this library.
                ctypes.CDLL(path)
            except OSError:
                return None
            return path
    return None


def threading_layer():
    """The threading layer Numba uses, starting its threads if needed (as any parallel kernel would)."""
    global _layer
    if _layer is None:
        import numba

        numba.get_num_threads()  # starts the threading layer
        _layer = numba.threading_layer()
    return _layer


def guard(kernel):
    """``kernel``, or, on Numba's workqueue layer, ``kernel`` called under a process-wide lock.

    workqueue aborts the process when two threads run parallel kernels at
    once; the lock makes them take turns. TBB and OpenMP need no lock.
    """
    if threading_layer() != "workqueue":
        return kernel

    def serialized(*args):
        with _kernel_lock:
            return kernel(*args)

    return serialized


_blas_lock = threading.Lock()
_blas_holder = threading.local()
_blas_libraries = None  # threadpoolctl's controllers of the loaded BLAS libraries


@contextlib.contextmanager
def single_threaded_blas():
    """A context in which BLAS runs on the calling thread only.

    Kernels that call BLAS from inside a Numba parallel loop use it: each of
    Numba's threads then runs its own products. A threaded BLAS there makes
    the concurrent calls queue for one shared pool (measured on 2 cores, a
    7×7 convolution of 64×32×17×17 to 32 channels: 14.5 ms with two BLAS
    threads, 7.7 ms with one), and its spinning threads take cores from Numba's.

    The thread counts are set through threadpoolctl's controllers of the
    loaded BLAS libraries, and restored by the same thread: uses from several
    Python threads take turns under a process-wide lock (each already runs on
    every core), because OpenBLAS has one thread count per process. Nested
    uses cost nothing; a use where every BLAS already runs one thread only
    reads the counts. A limit set through threadpoolctl stands: the counts
    found on entry are the ones restored.
    (Not threadpoolctl's ``limit``, which lists every library's versions and
    settings on each use: 8.6 µs a use against 3.0 µs, measured; a training
    step of the 28×28 CNN makes 12 uses.)
    """
    global _blas_libraries
    if getattr(_blas_holder, "active", False):
        yield
        return
    with _blas_lock:
        if _blas_libraries is None:
            # Load the BLAS that Numba's np.dot calls before listing the loaded ones.
            import scipy.linalg.cython_blas  # noqa: F401
            from threadpoolctl import ThreadpoolController

            _blas_libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        counts = [library.get_num_threads() for library in _blas_libraries]
        _blas_holder.active = True
        try:
            for library, count in zip(_blas_libraries, counts):
                if count != 1:
                    library.set_num_threads(1)
            yield
        finally:
            for library, count in zip(_blas_libraries, counts):
                if count != 1:
                    library.set_num_threads(count)
            _blas_holder.active = False
