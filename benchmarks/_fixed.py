"""The fixed cost of one call: a 1×1×4×4 float32 input, warm, per op and implementation.

What a NumPy pipeline that warps one small image at a time pays on every
call: validation, dispatch, argument typing and any thread-pool wake-up, with
almost no work. Run as ``python -m benchmarks._fixed --impl NAME`` it is the
worker that times one implementation; :func:`collect` runs one worker per
implementation. Each figure is the median over repeats of the mean per-call
time of a loop of calls.
"""

import argparse
import statistics
import sys
import timeit

import numpy as np

from . import _harness

OPS = ("affine_grid", "grid_sample", "grid_sample_backward", "affine_grid_sample")
SIZE = (1, 1, 4, 4)
LOOP, REPEATS = 2000, 7


def _data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal(SIZE, dtype=np.float32),
            rng.uniform(-1, 1, (1, 4, 4, 2)).astype(np.float32),
            np.array([[[0.9, 0.1, 0.0], [-0.1, 0.9, 0.0]]], dtype=np.float32))


def stn_numba_ops():
    import stn_numba

    image, grid, theta = _data()
    return {
        "affine_grid": lambda: stn_numba.affine_grid(theta, SIZE),
        "grid_sample": lambda: stn_numba.grid_sample(image, grid),
        "grid_sample_backward": lambda: stn_numba.grid_sample_backward(image, image, grid),
        "affine_grid_sample": lambda: stn_numba.affine_grid_sample(image, theta, SIZE),
    }


def torch_ops():
    import torch
    import torch.nn.functional as F

    image, grid, theta = (torch.as_tensor(a) for a in _data())

    def backward():  # the op autograd calls for grid_sample's backward
        return torch.ops.aten.grid_sampler_2d_backward(image, image, grid, 0, 0, False, [True, True])

    with torch.no_grad():
        return {
            "affine_grid": lambda: F.affine_grid(theta, SIZE, align_corners=False),
            "grid_sample": lambda: F.grid_sample(image, grid, align_corners=False),
            "grid_sample_backward": backward,
            "affine_grid_sample": lambda: F.grid_sample(image, F.affine_grid(theta, SIZE, align_corners=False),
                                                        align_corners=False),
        }


IMPLEMENTATIONS = {"stn_numba": ("stn_numba CPU", stn_numba_ops), "torch": ("torch CPU", torch_ops)}


def measure(impl, quick=False):
    """Microseconds per call of each op of ``impl``, in this process."""
    label, make_ops = IMPLEMENTATIONS[impl]
    loop, repeats = (50, 2) if quick else (LOOP, REPEATS)
    rows = []
    no_grad = None
    if impl == "torch":
        import torch

        no_grad = torch.no_grad()
        no_grad.__enter__()
    for op, function in make_ops().items():
        function()  # compiles or loads the cache
        per_call = [t / loop * 1e6 for t in timeit.repeat(function, number=loop, repeat=repeats)]
        rows.append({"op": op, "impl": impl, "label": label, "median_us": statistics.median(per_call),
                     "min_us": min(per_call), "max_us": max(per_call), "calls": loop * repeats})
    if no_grad is not None:
        no_grad.__exit__(None, None, None)
    return rows


def collect(impls, threads, quick=False, timeout=None, log=print):
    """Run one worker per implementation (those installed); return the rows."""
    rows = []
    for impl in impls:
        if impl not in IMPLEMENTATIONS:
            continue
        try:
            result = _harness.run_worker("benchmarks._fixed", ["--impl", impl, "--threads", threads]
                                         + (["--quick"] if quick else []), threads=threads, timeout=timeout)
        except _harness.WorkerError as error:
            log(f"[bench] fixed cost, {impl}: skipped ({str(error).splitlines()[0]})")
            continue
        rows.extend(result["rows"])
    anchors = {row["op"]: row["median_us"] for row in rows if row["impl"] == "torch"}
    for row in rows:
        if row["op"] in anchors:
            row["ratio_vs_torch"] = row["median_us"] / anchors[row["op"]]
    return rows


def table(rows):
    """The fixed costs as a markdown table."""
    lines = [f"Input {'×'.join(map(str, SIZE))} float32, warm; µs per call: median over {REPEATS} loops of "
             f"{LOOP} calls (min–max of the loop means).", "",
             "| op | implementation | µs per call | min–max | ratio vs torch |", "|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (OPS.index(r["op"]), r["impl"] != "stn_numba")):
        ratio = row.get("ratio_vs_torch")
        lines.append(f"| {row['op']} | {row['label']} | {row['median_us']:.2f} | "
                     f"{row['min_us']:.2f}–{row['max_us']:.2f} | {'—' if ratio is None else f'{ratio:.2f}×'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Worker: time one implementation's fixed cost per call.")
    parser.add_argument("--impl", required=True, choices=sorted(IMPLEMENTATIONS))
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    __import__("stn_numba" if args.impl == "stn_numba" else "torch")
    threads = _harness.set_threads(args.threads)
    _harness.emit({"rows": measure(args.impl, args.quick), "threads_applied": threads})


if __name__ == "__main__":
    sys.exit(main())
