#!/usr/bin/env bash
# The GPU checks, as one command on a lent GPU machine (the device tool), from
# the repository root: the card and versions, the CUDA suite on the device
# (STN_NUMBA_REAL_GPU=1), then bench_cuda. Everything lands in $OUT (default
# benchmarks/out/gpu). Wheels under .whl/ (e.g. a numpy that the machine's
# numba-cuda imports with) are installed first into a private folder.
#
#   TEST_SECONDS / BENCH_SECONDS bound each step, so the bench still runs when
#   the suite is slow; a step stopped by its bound says so in its log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/out/gpu}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi

{
    nvidia-smi -L
    python3 -c 'import numba, numba_cuda, numpy, scipy
from numba import cuda
print("python", __import__("sys").version.split()[0], "numba", numba.__version__,
      "numba-cuda", numba_cuda.__version__, "numpy", numpy.__version__, "scipy", scipy.__version__)
print("device", cuda.get_current_device().name.decode() if isinstance(cuda.get_current_device().name, bytes)
      else cuda.get_current_device().name, "cc", cuda.get_current_device().compute_capability)'
    python3 -c 'import torch; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
} >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

start=$SECONDS
STN_NUMBA_REAL_GPU=1 timeout "${TEST_SECONDS:-300}" python3 -m pytest -q -p no:cacheprovider \
    -n "${TEST_WORKERS:-8}" --durations=10 tests/cuda >"$OUT/cuda_tests.log" 2>&1
echo "cuda tests: exit $? after $((SECONDS - start)) s (124: stopped by TEST_SECONDS)" | tee -a "$OUT/cuda_tests.log"
tail -n 25 "$OUT/cuda_tests.log"

start=$SECONDS
timeout "${BENCH_SECONDS:-240}" python3 -m benchmarks.bench_cuda --out "$OUT" --timeout 200 \
    >"$OUT/bench_cuda.log" 2>&1
echo "bench_cuda: exit $? after $((SECONDS - start)) s (124: stopped by BENCH_SECONDS)" | tee -a "$OUT/bench_cuda.log"
tail -n 40 "$OUT/bench_cuda.log"
