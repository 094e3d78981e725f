"""The fixed cost of one call: a 1×1×4×4 float32 input, warm, per op and implementation.

What a NumPy pipeline that warps one small image at a time pays on every
call: validation, dispatch, argument typing and any thread-pool wake-up, with
almost no work. Run as ``python -m benchmarks._fixed --impl NAME`` it is a
serving worker that times a loop of calls of one op on request;
:func:`collect` keeps one per implementation alive and has them take turns,
loop by loop. Each figure is the median over the loops of their mean
per-call time.
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


class _LoopTimer:
    """A serving worker's handler: microseconds per call of a loop of ``{"op"}``'s calls."""

    def __init__(self, impl, loop):
        self.loop = loop
        if impl == "torch":
            import torch

            torch.set_grad_enabled(False)
        self.ops = IMPLEMENTATIONS[impl][1]()
        for function in self.ops.values():
            function()  # compiles or loads the cache

    def __call__(self, request):
        function = self.ops[request["op"]]
        return {"us": timeit.timeit(function, number=self.loop) / self.loop * 1e6}


def collect(impls, threads, quick=False, timeout=None, log=print):
    """The rows of the installed implementations: their serving workers, alive together, time
    loops of each op in turn (the order rotating from loop to loop)."""
    loop, repeats = (50, 2) if quick else (LOOP, REPEATS)
    workers, failed = _harness.start_workers(
        "benchmarks._fixed", [impl for impl in impls if impl in IMPLEMENTATIONS],
        lambda impl: ["--impl", impl, "--threads", threads, "--loop", loop], threads=threads, timeout=timeout)
    for impl, reason in failed.items():
        log(f"[bench] fixed cost, {impl}: skipped ({reason.splitlines()[0]})")
    per_call = {}
    try:
        for repeat in range(repeats):
            for op in OPS:
                for impl in _harness.rotated(workers, repeat):
                    per_call.setdefault((impl, op), []).append(workers[impl].request({"op": op})["us"])
    finally:
        for worker in workers.values():
            worker.close()
    rows = [{"op": op, "impl": impl, "label": IMPLEMENTATIONS[impl][0], "median_us": statistics.median(values),
             "min_us": min(values), "max_us": max(values), "calls": loop * len(values)}
            for (impl, op), values in per_call.items()]
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
    parser = argparse.ArgumentParser(description="Serving worker: times loops of one implementation's calls.")
    parser.add_argument("--impl", required=True, choices=sorted(IMPLEMENTATIONS))
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--loop", type=int, default=LOOP)
    args = parser.parse_args(argv)
    __import__("stn_numba" if args.impl == "stn_numba" else "torch")
    threads = _harness.set_threads(args.threads)
    timer = _LoopTimer(args.impl, args.loop)
    _harness.emit({"threads_applied": threads})
    _harness.serve(timer)


if __name__ == "__main__":
    sys.exit(main())
