"""Doctest collection of the package (``pytest --doctest-modules stn_numba``, scripts/run_tests.sh).

Collecting a module imports it: the modules that need an optional dependency are left out where it is
missing, so that the doctests of the rest still run. The dependencies are looked up, not imported.
"""

from importlib.util import find_spec

collect_ignore = []
if find_spec("dask") is None:
    collect_ignore.append("stn_numba/dask.py")  # the `dask` extra
if find_spec("numba_cuda") is None:
    collect_ignore.append("stn_numba/_cuda")  # the `cuda` extra: numba-cuda provides numba.cuda
