"""stn_numba.dask against dask-image on one LocalCluster, and the batch-chunked warp against the in-memory call.

Run from the repository root on an otherwise idle machine::

    pip install -e ".[dask,bench]" dask-image
    python -m benchmarks.bench_dask --out benchmarks/results/dask-amd-epyc-2vcpu   # full size, ~10-20 min
    python -m benchmarks.bench_dask --quick        # smoke run on toy sizes: numbers mean nothing

Cases (float32, order 1 / bilinear, one ``LocalCluster`` of ``--workers``
worker processes × ``--threads-per-worker`` threads, 2 × 1 by default):

=========  ==========================================  ======================================
case       stn_numba                                   against
=========  ==========================================  ======================================
image      ``stn_numba.dask.affine_transform``,        ``dask_image.ndinterp.affine_transform``,
           8192² rotation (0.3 rad) + scale 1.1,       same arguments, same chunks
           chunks 1024², mode "constant"
volume     the same on a 512³ volume, chunks 128³      the same
batch      ``stn_numba.dask.affine_grid_sample`` on    ``stn_numba.affine_grid_sample`` in
           4096 RGB 224² images, 128 images a chunk    memory, in this process, with Numba
                                                       threads = workers × threads
=========  ==========================================  ======================================

Inputs are generated on the workers and kept there (``persist``); a timed run
is building the graph plus computing every output chunk into the workers'
memory (``persist`` + ``wait``), so nothing crosses to the client. Each figure
is the median of ``--repeats`` runs after one warm-up on a small array (which
compiles or loads the kernels in every worker) and one first full-size run,
whose time is reported apart (see `_timed`). The peak memory per worker is
the highest resident set size sampled every 10 ms during the timed runs,
and its growth over the worker's size before them. ``max_abs_difference``
compares the two results of a case (the batch case: the first chunk against
the in-memory call on the same images; 0 means bitwise equal).

Writes ``results.json`` and ``results.md`` to ``--out`` (default
``benchmarks/out/dask``).
"""

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

FULL = {"image": (8192, 1024), "volume": (512, 128), "batch": (4096, 224, 128)}
QUICK = {"image": (256, 64), "volume": (24, 12), "batch": (8, 16, 4)}


def _rotation(ndim, angle=0.3, scale=1.1):
    """scipy's matrix and offset of a rotation about the centre, scaled by ``scale``."""
    matrix = np.eye(ndim)
    matrix[-2:, -2:] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return matrix * scale


def _offset(matrix, shape):
    centre = (np.asarray(shape) - 1) / 2.0
    return centre - matrix @ centre


class _Memory:
    """Peak resident set size of the worker processes while it is active."""

    def __init__(self, client):
        import psutil

        self.processes = {address: psutil.Process(pid) for address, pid in client.run(os.getpid).items()}
        self.before = {address: process.memory_info().rss for address, process in self.processes.items()}
        self.peaks = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            for address, process in self.processes.items():
                try:
                    self.peaks[address] = max(self.peaks[address], process.memory_info().rss)
                except Exception:
                    pass
            time.sleep(0.01)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def report(self):
        mib = 2.0**20
        return ({f"worker{i}": round(self.peaks[a] / mib, 1) for i, a in enumerate(sorted(self.peaks))},
                {f"worker{i}": round((self.peaks[a] - self.before[a]) / mib, 1)
                 for i, a in enumerate(sorted(self.peaks))})


def _known_keys(keys, dask_scheduler=None):
    return [key for key in keys if key in dask_scheduler.tasks]


def _timed(run, repeats, timeout=60.0):
    """Median seconds of ``run()`` (which returns a persisted collection) over
    ``repeats`` runs after a first one, and the seconds of each run and of
    the first.

    The first run is left out of the median: on a fresh cluster it also
    pays for the workers' first connections to each other and for growing
    their memory (stn_numba's 8192² image: 0.58-0.84 s, then 0.33-0.37 s).
    Each run builds the same graph, so the same keys: before the next one, wait
    until the scheduler has forgotten the last result's keys (it releases them
    some time after the client drops them), else the next run may find some of
    them still in memory and not compute them."""
    from distributed import futures_of, get_client, wait

    client = get_client()
    seconds = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        result = run()
        wait(result)
        seconds.append(time.perf_counter() - start)
        keys = [future.key for future in futures_of(result)]
        del result
        deadline = time.monotonic() + timeout
        while client.run_on_scheduler(_known_keys, keys):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the scheduler still holds a result's keys {timeout} s after its release")
            time.sleep(0.01)
    return statistics.median(seconds[1:]), seconds[1:], seconds[0]


def _warm_up(ndim, chunk):
    """Run both warps once on a small image inside a worker (kernels compiled or loaded, imports done)."""
    import dask.array as da
    from dask_image.ndinterp import affine_transform as dask_image_affine

    import stn_numba.dask as sd

    shape = (2 * chunk,) * ndim
    image = da.from_array(np.random.default_rng(0).random(shape, dtype=np.float32), chunks=chunk)
    matrix = _rotation(ndim)
    offset = _offset(matrix, shape)
    sd.affine_transform(image, matrix, offset, output_chunks=chunk).compute(scheduler="sync")
    dask_image_affine(image, matrix, offset, output_chunks=(chunk,) * ndim, order=1).compute(scheduler="sync")


def _warm_up_batch(per_chunk, side, theta):
    import stn_numba

    images = np.random.default_rng(0).random((per_chunk, 3, side, side), dtype=np.float32)
    stn_numba.affine_grid_sample(images, theta, images.shape)


def _warp_case(client, name, ndim, size, chunk, repeats):
    import dask.array as da
    from dask_image.ndinterp import affine_transform as dask_image_affine

    import stn_numba.dask as sd

    shape = (size,) * ndim
    matrix = _rotation(ndim)
    offset = _offset(matrix, shape)
    image = da.random.default_rng(7).random(shape, dtype=np.float32, chunks=chunk).persist()
    client.run(_warm_up, ndim, chunk)
    sd.affine_transform(image, matrix, offset, output_chunks=chunk)  # the client's graph building, once
    row = {"case": name, "shape": list(shape), "chunks": [chunk] * ndim, "dtype": "float32", "order": 1,
           "mode": "constant"}
    with _Memory(client) as memory:
        row["stn_numba_s"], row["stn_numba_runs"], row["stn_numba_first_s"] = _timed(
            lambda: sd.affine_transform(image, matrix, offset, output_chunks=chunk).persist(), repeats)
    row["peak_rss_mib"], row["peak_rss_growth_mib"] = memory.report()
    with _Memory(client) as memory:
        row["dask_image_s"], row["dask_image_runs"], row["dask_image_first_s"] = _timed(
            lambda: dask_image_affine(image, matrix, offset, output_chunks=(chunk,) * ndim, order=1).persist(),
            repeats)
    row["dask_image_peak_rss_mib"], row["dask_image_peak_rss_growth_mib"] = memory.report()
    ours = sd.affine_transform(image, matrix, offset, output_chunks=chunk)
    theirs = dask_image_affine(image, matrix, offset, output_chunks=(chunk,) * ndim, order=1)
    row["max_abs_difference"] = float(abs(ours - theirs.astype(np.float32)).max().compute())
    row["speedup"] = row["dask_image_s"] / row["stn_numba_s"]
    return row


def _batch_case(client, count, side, per_chunk, repeats, threads):
    import dask.array as da
    import numba

    import stn_numba
    import stn_numba.dask as sd

    rng = np.random.default_rng(3)
    size = (count, 3, side, side)
    angles = rng.uniform(-0.2, 0.2, count)
    scales = rng.uniform(0.9, 1.1, count)
    theta = np.zeros((count, 2, 3), np.float32)
    theta[:, 0, 0] = theta[:, 1, 1] = scales * np.cos(angles)
    theta[:, 0, 1], theta[:, 1, 0] = -scales * np.sin(angles), scales * np.sin(angles)
    theta[:, :, 2] = rng.uniform(-0.1, 0.1, (count, 2))
    row = {"case": "batch", "shape": list(size), "chunks": [per_chunk, 3, side, side], "dtype": "float32",
           "order": 1, "mode": "bilinear, zeros"}

    # in memory, in this process, with as many Numba threads as the cluster has Dask threads
    saved = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        images = rng.random(size, dtype=np.float32)
        stn_numba.affine_grid_sample(images[:2], theta[:2], (2,) + size[1:])
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            stn_numba.affine_grid_sample(images, theta, size)
            seconds.append(time.perf_counter() - start)
        row["in_memory_s"], row["in_memory_runs"] = statistics.median(seconds), seconds
        del images
    finally:
        numba.set_num_threads(saved)

    images = da.random.default_rng(5).random(size, dtype=np.float32, chunks=(per_chunk, 3, side, side)).persist()
    client.run(_warm_up_batch, per_chunk, side, theta[:per_chunk])
    with _Memory(client) as memory:
        row["stn_numba_s"], row["stn_numba_runs"], row["stn_numba_first_s"] = _timed(
            lambda: sd.affine_grid_sample(images, theta, size).persist(), repeats)
    row["peak_rss_mib"], row["peak_rss_growth_mib"] = memory.report()
    first = images[:per_chunk].compute()
    chunk = sd.affine_grid_sample(images, theta, size)[:per_chunk].compute()
    expected = stn_numba.affine_grid_sample(first, theta[:per_chunk], (per_chunk,) + size[1:])
    row["max_abs_difference"] = float(np.abs(chunk - expected).max())
    row["bitwise_equal_first_chunk"] = bool(np.array_equal(chunk, expected))
    row["slowdown"] = row["stn_numba_s"] / row["in_memory_s"]
    return row


def _markdown(payload):
    lines = [f"# stn_numba.dask benchmark ({payload['machine']['cpu']}, {payload['machine']['cores']} cores)", "",
             f"LocalCluster: {payload['settings']['workers']} workers × {payload['settings']['threads_per_worker']} "
             f"thread(s), Numba threads per task {payload['settings']['numba_threads_per_task']}; "
             f"median of {payload['settings']['repeats']} runs; {payload['date']}", "",
             "| case | shape | chunks | stn_numba s | against | their s | ratio | peak RSS per worker MiB (growth) |",
             "|---|---|---|---|---|---|---|---|"]
    for row in payload["rows"]:
        peaks = ", ".join(f"{row['peak_rss_mib'][w]:.0f} ({row['peak_rss_growth_mib'][w]:+.0f})"
                          for w in sorted(row["peak_rss_mib"]))
        shape = "×".join(map(str, row["shape"]))
        chunks = "×".join(map(str, row["chunks"]))
        if row["case"] == "batch":
            lines.append(f"| batch | {shape} | {chunks} | {row['stn_numba_s']:.3f} | in-memory call | "
                         f"{row['in_memory_s']:.3f} | {row['slowdown']:.2f}× the in-memory time | {peaks} |")
        else:
            lines.append(f"| {row['case']} | {shape} | {chunks} | {row['stn_numba_s']:.3f} | dask-image | "
                         f"{row['dask_image_s']:.3f} | {row['speedup']:.2f}× faster | {peaks} |")
    lines += ["", "Largest difference between the two results of each case: "
              + ", ".join(f"{row['case']} {row['max_abs_difference']:.3g}" for row in payload["rows"]), "",
              "First runs, left out of the medians (s): "
              + ", ".join(f"{row['case']} {row['stn_numba_first_s']:.3f}"
                          + (f" (dask-image {row['dask_image_first_s']:.3f})" if "dask_image_first_s" in row else "")
                          for row in payload["rows"]), ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes, one run: a smoke test")
    parser.add_argument("--out", default="benchmarks/out/dask")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per figure (default 3, quick 1)")
    parser.add_argument("--cases", default="image,volume,batch")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or (1 if args.quick else 3)
    cases = args.cases.split(",")

    from distributed import Client, LocalCluster

    import stn_numba.dask as sd

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with LocalCluster(n_workers=args.workers, threads_per_worker=args.threads_per_worker, processes=True,
                      dashboard_address=None, silence_logs=40) as cluster, Client(cluster) as client:
        numba_threads = client.submit(sd.numba_threads, sd._cluster_threads(), pure=False).result()
        for name in cases:
            print(f"{name} ...", file=sys.stderr, flush=True)
            if name == "image":
                rows.append(_warp_case(client, "image", 2, *sizes["image"], repeats))
            elif name == "volume":
                rows.append(_warp_case(client, "volume", 3, *sizes["volume"], repeats))
            elif name == "batch":
                rows.append(_batch_case(client, *sizes["batch"], repeats, args.workers * args.threads_per_worker))
            else:
                parser.error(f"--cases: unknown case {name!r} (image, volume, batch)")
    from importlib.metadata import version

    import dask
    import numba

    from ._harness import cpu_model

    payload = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(),
                    "python": platform.python_version(),
                    "versions": {"dask": dask.__version__, "dask_image": version("dask-image"),
                                 "numba": numba.__version__, "numpy": np.__version__}},
        "settings": {"quick": args.quick, "workers": args.workers, "threads_per_worker": args.threads_per_worker,
                     "repeats": repeats, "numba_threads_per_task": numba_threads},
        "rows": rows,
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (out / "results.md").write_text(_markdown(payload), encoding="utf-8")
    print(_markdown(payload))


if __name__ == "__main__":
    main()
