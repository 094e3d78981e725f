#!/usr/bin/env bash
# The whole test suite. First the fast checks, which fail early: ruff (lint
# and import order, [tool.ruff] in pyproject.toml), then the examples in the
# package's docstrings as doctests (conftest.py leaves out the modules whose
# optional dependency is missing). Then the CPU suite, then the CUDA suite
# under the Numba CUDA simulator in its own process (NUMBA_ENABLE_CUDASIM must
# be set before numba is imported); on a machine with a GPU,
# STN_NUMBA_REAL_GPU=1 runs it on the device instead. Last, the fuzz cases run
# once more on bounds-checked serial copies of the CPU kernels
# (tests/test_fuzz.py), which compile into a fresh private Numba cache (the
# cache does not key on NUMBA_BOUNDSCHECK); float64 only, to halve the compile
# time, and on two pytest-xdist workers, which share that cache (on an Intel
# Xeon host of the CI kind: 299 s serial, 158 s on two). Then the
# documentation site is built into a fresh folder with warnings as errors (the
# gallery's examples run), and scripts/check_docs.py checks that every page
# and example built and that every internal link and anchor resolves.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m ruff check .
python -m pytest -q --doctest-modules stn_numba

# Two pytest-xdist workers, a test file each at a time (module fixtures run
# once): most of the CPU suite's time is Numba compiling, one core a process.
python -m pytest -q -n 2 --dist loadfile tests --ignore=tests/cuda "$@"
if [ -d tests/cuda ]; then
    if [ "${STN_NUMBA_REAL_GPU:-0}" = "1" ]; then
        python -m pytest -q tests/cuda "$@"
    else
        NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda "$@"
    fi
fi

bounds_cache="$(mktemp -d)"
docs_build="$(mktemp -d)"
trap 'rm -rf "$bounds_cache" "$docs_build"' EXIT
NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR="$bounds_cache" STN_NUMBA_FUZZ_DTYPES=float64 \
    python -m pytest -q -n 2 tests/test_fuzz.py "$@"

python -m sphinx -W -q -b html docs "$docs_build"
python scripts/check_docs.py docs "$docs_build"
