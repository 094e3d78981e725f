#!/usr/bin/env bash
# The whole test suite: the CPU suite, then the CUDA suite under the Numba CUDA
# simulator in its own process (NUMBA_ENABLE_CUDASIM must be set before numba
# is imported). On a machine with a GPU, STN_NUMBA_REAL_GPU=1 runs the CUDA
# suite on the device instead.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pytest -q tests --ignore=tests/cuda "$@"
if [ -d tests/cuda ]; then
    if [ "${STN_NUMBA_REAL_GPU:-0}" = "1" ]; then
        python -m pytest -q tests/cuda "$@"
    else
        NUMBA_ENABLE_CUDASIM=1 python -m pytest -q tests/cuda "$@"
    fi
fi
