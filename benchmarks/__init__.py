"""stn_numba's benchmark suite: run ``python -m benchmarks --help`` (see README.md here)."""
