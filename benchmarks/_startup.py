"""Start-up cost: ``import stn_numba`` and first calls, with a cold and a warm Numba cache.

Run as ``python -m benchmarks._startup --mode cold|warm`` it is the worker:
``cold`` (an empty private ``NUMBA_CACHE_DIR``) times the import and then the
first call of each kernel family, which is its compile (the tiny call itself
is negligible); ``warm`` (the same directory, now filled) times the import
and the first ``grid_sample`` 2-D call (or another family's, for smoke tests).
:func:`measure_startup` runs both.

Only the standard library is imported before the clock starts.
"""

import time

START = time.perf_counter()

import argparse  # noqa: E402  (imported after the clock starts, on purpose)
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

from . import _harness  # noqa: E402  (stdlib only at import)

DTYPE = "float32"  # one specialisation per dtype: float64 compiles again
WARM_CALL = "grid_sample 2-D"


def _first_calls(stn_numba, np, spatial):
    """(kernel family, call) pairs on tiny float32 arrays of ``spatial`` dims."""
    size = (1, 2) + (4,) * spatial
    rng = np.random.default_rng(0)
    theta = (np.float32(0.9) * np.eye(spatial, spatial + 1, dtype=DTYPE))[None]
    image = rng.standard_normal(size, dtype=DTYPE)  # also the grad_output: same shape
    grid = rng.uniform(-1.2, 1.2, size[:1] + size[2:] + (spatial,)).astype(DTYPE)
    calls = [
        ("affine_grid", lambda: stn_numba.affine_grid(theta, size)),
        ("affine_grid_backward", lambda: stn_numba.affine_grid_backward(grid, size)),
        ("grid_sample", lambda: stn_numba.grid_sample(image, grid)),
        ("grid_sample_backward", lambda: stn_numba.grid_sample_backward(image, image, grid)),
    ]
    if hasattr(stn_numba, "affine_grid_sample"):
        calls += [
            ("affine_grid_sample", lambda: stn_numba.affine_grid_sample(image, theta, size)),
            ("affine_grid_sample_backward",
             lambda: stn_numba.affine_grid_sample_backward(image, image, theta, size)),
        ]
    return [(f"{name} {spatial}-D", call) for name, call in calls]


def _worker(mode, families):
    import stn_numba

    imported = time.perf_counter()
    import numpy as np

    _harness.set_threads(int(os.environ.get("NUMBA_NUM_THREADS", "1")))
    calls = dict(_first_calls(stn_numba, np, 2) + _first_calls(stn_numba, np, 3))
    unknown = sorted(set(families) - set(calls))
    if unknown:
        raise ValueError(f"--families: unknown kernel families {unknown}; known: {', '.join(calls)}")
    result = {"mode": mode, "import_s": imported - START}
    if mode == "warm":
        (name,) = families
        start = time.perf_counter()
        calls[name]()
        result.update(first_call=name, first_call_s=time.perf_counter() - start,
                      import_and_first_call_s=time.perf_counter() - START)
        return result
    result["compile_s"] = {}
    for name, call in calls.items():
        if not families or name in families:
            start = time.perf_counter()
            call()
            result["compile_s"][name] = time.perf_counter() - start
    return result


def measure_startup(threads, families=None, warm_runs=3, timeout=None):
    """Cold-cache compile times and warm-cache import + first call, each in a fresh process.

    Parameters
    ----------
    threads : int
        Thread count of the workers.
    families : sequence of str, optional
        Kernel families to compile cold, e.g. ``["affine_grid 2-D"]`` (default
        all). The warm runs' first call is ``grid_sample 2-D`` when it is
        among them, else the first of them (a smoke test's cheap choice).
    warm_runs : int, optional
        Warm-cache processes; the median of each figure is reported.
    timeout : float, optional
        Seconds per worker.

    Returns
    -------
    dict
        ``cold`` (import_s, compile_s per family, process wall_s) and ``warm``
        (first_call, and the medians over ``warm_runs`` processes of import_s,
        first_call_s, import_and_first_call_s, wall_s).
    """
    families = list(families or ())
    first_call = WARM_CALL if not families or WARM_CALL in families else families[0]
    cache = tempfile.mkdtemp(prefix="stn_numba_bench_cache_")
    try:
        env = {"NUMBA_CACHE_DIR": cache}
        cold = _harness.run_worker("benchmarks._startup", ["--mode", "cold", "--families", ",".join(families)],
                                   threads=threads, env=env, timeout=timeout)
        warm = [_harness.run_worker("benchmarks._startup", ["--mode", "warm", "--families", first_call],
                                    threads=threads, env=env, timeout=timeout) for _ in range(warm_runs)]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    keys = ("import_s", "first_call_s", "import_and_first_call_s", "wall_s")
    warm_median = {key: sorted(run[key] for run in warm)[len(warm) // 2] for key in keys}
    return {"cold": cold, "warm": {"first_call": first_call, **warm_median, "runs": len(warm)},
            "dtype": DTYPE, "threads": threads}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Worker: time import stn_numba and first calls.")
    parser.add_argument("--mode", choices=("cold", "warm"), required=True)
    parser.add_argument("--families", default="", help="cold: those to compile (default all); warm: the one to call")
    args = parser.parse_args(argv)
    _harness.emit(_worker(args.mode, [name for name in args.families.split(",") if name]))


if __name__ == "__main__":
    main()
