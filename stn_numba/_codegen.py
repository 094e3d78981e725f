"""Numba's code generation on AVX-512 CPUs: full-width vectors, unless a user chose otherwise.

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
"""

# The LLVM tuning feature turned off, as the target's features spell it.
_FULL_WIDTH = "-prefer-256-bit"


def _host_features():
    import llvmlite.binding as llvm

    return llvm.get_host_cpu_features().flatten()


def _codegen_started(registry):
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
    from numba.core import config, registry

    if config.CPU_NAME is not None or config.CPU_FEATURES is not None or _codegen_started(registry):
        return None
    features = host_features()
    if "+avx512f" not in features.split(","):
        return None
    config.CPU_FEATURES = f"{features},{_FULL_WIDTH}"
    return config.CPU_FEATURES

