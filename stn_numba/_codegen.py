"""Numba's code generation for the CPU kernels: full-width vectors, sized by the narrowest type.

LLVM tunes its Intel AVX-512 CPU models (Skylake-X to Emerald Rapids) to
prefer 256-bit vectors (the ``prefer-256-bit`` tuning), so the loops Numba
vectorises there use half the lanes the CPU has; its AMD models (Zen 4, 5)
use all of them. The kernels' loops over output points (gathers of input
pixels, weights, stores) are throughput-bound: on an Intel Xeon (Emerald
Rapids, 2 threads), 512-bit vectors took 256x1x28² bilinear 0.30 -> 0.17 ms,
its reflection 0.60 -> 0.31 ms, the fused 2048² warp 6.7 -> 5.4 ms.

Numba reads the target's features once, when it makes its CPU code generator
(at the first compilation in the process). :func:`prefer_full_width_vectors`,
run when stn_numba is imported, sets ``numba.config.CPU_FEATURES`` to the
host's features with ``-prefer-256-bit`` before then. It applies to every
Numba function of the process, and Numba caches what it compiles under
those features. Nothing is changed when a user set ``NUMBA_CPU_NAME`` or
``NUMBA_CPU_FEATURES`` (theirs win: setting ``NUMBA_CPU_FEATURES`` to the
host's features keeps LLVM's tuning), when the CPU has no AVX-512, or when
Numba has already compiled something (too late: the kernels then run with
LLVM's tuning, correct and slower).

Second, the vector width of the kernels' loops. LLVM's loop vectoriser
sizes its vectors by the widest type in a loop: the bilinear loops read
each pair of pixels as one 64-bit value, so on 512-bit vectors they ran 8
points at a time, though every value computed is 32-bit. The kernels are
compiled with ``-vectorizer-maximize-bandwidth``, which lets the cost model
size them by the narrowest type instead (16 float32 points); on that Xeon,
1 thread, 256x1x28²: bilinear 0.46 -> 0.32 ms, border 0.50 -> 0.35 ms,
bicubic 1.70 -> 1.29 ms, nearest 0.15 -> 0.12 ms, fused 0.62 -> 0.50 ms.
That option is LLVM's and process-wide: :func:`njit` sets it around each
compilation of a kernel only, under Numba's compiler lock (so no other
function compiles meanwhile), and unsets it after, so that a user's own
Numba functions compile as they would without stn_numba.
"""

import functools

import llvmlite.binding as llvm
import numba
from numba.core import config, registry
from numba.core.compiler_lock import global_compiler_lock

# The LLVM tuning feature turned off, as the target's features spell it.
_FULL_WIDTH = "-prefer-256-bit"
# LLVM's option while a kernel compiles, and its default (x86 does not
# maximise the bandwidth) after.
_NARROWEST_TYPE_WIDTH = ("-vectorizer-maximize-bandwidth", "-vectorizer-maximize-bandwidth=false")
_compiling = 0  # kernels being compiled, one inside another (under the compiler lock)


def _host_features():
    return llvm.get_host_cpu_features().flatten()


def _codegen_started():
    """Whether Numba has made its CPU target context (and so its code generator) already."""
    return "_toplevel_target_context" in vars(registry.cpu_target)


def prefer_full_width_vectors(host_features=_host_features):
    """Have Numba vectorise with the CPU's full AVX-512 width (see the module docstring).

    Returns
    -------
    str or None
        The features set in ``numba.config.CPU_FEATURES``, or None when
        nothing was done.
    """
    if config.CPU_NAME is not None or config.CPU_FEATURES is not None or _codegen_started():
        return None
    features = host_features()
    if "+avx512f" not in features.split(","):
        return None
    config.CPU_FEATURES = f"{features},{_FULL_WIDTH}"
    return config.CPU_FEATURES


def _compile_kernel(compile, signature):
    """``compile(signature)`` with LLVM's vectoriser sizing vectors by the narrowest type."""
    global _compiling
    with global_compiler_lock:
        if _compiling == 0:
            llvm.set_option("", _NARROWEST_TYPE_WIDTH[0])
        _compiling += 1
        try:
            return compile(signature)
        finally:
            _compiling -= 1
            if _compiling == 0:
                llvm.set_option("", _NARROWEST_TYPE_WIDTH[1])


def njit(function=None, **options):
    """``numba.njit``, for the CPU kernels: each compilation of the function
    vectorises its loops by their narrowest type (see the module docstring).
    Used bare or with Numba's options, as ``numba.njit``."""
    if function is None:
        return functools.partial(njit, **options)
    dispatcher = numba.njit(**options)(function)
    # (Numba compiles each new signature through the dispatcher's ``compile``)
    dispatcher.compile = functools.partial(_compile_kernel, dispatcher.compile)
    return dispatcher
