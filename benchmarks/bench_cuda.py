"""The CUDA benchmark: stn_numba on the GPU against stn_numba on the CPU and torch CUDA.

For every benchmark shape (float32, bilinear, zeros, align_corners=False, thetas
near the identity, as in ``python -m benchmarks``) it times ``affine_grid``,
``grid_sample``, ``grid_sample`` + ``grid_sample_backward`` with the atomic
input gradient, and the same with ``deterministic=True``, on arrays already on
the GPU. Each implementation runs in its own process (stn_numba CPU with every
usable core, stn_numba CUDA, torch CUDA as the anchor when torch sees a GPU).

A timed call is ``function(); synchronize()`` under ``time.perf_counter``, so
it includes Python dispatch and launch overheads, as a user's call would;
untimed warm-up calls first (the first one compiles), then the median and IQR
of the repeats. GB/s is the op's minimal traffic (``benchmarks._sampler.
bytes_moved``) over the median time, compared with a measured device-to-device
copy of 256 MiB (read + write bytes / time).

Usage, from the repository root on a machine with an NVIDIA GPU::

    python -m benchmarks.bench_cuda [--out benchmarks/results/cuda] [--quick]

It writes ``results.json``, ``results.md`` (naming the card) and, when torch
CUDA ran and matplotlib is installed, ``ratios.png`` (stn_numba CUDA's time
over torch CUDA's, per shape and op) into ``--out`` (default
``benchmarks/out/cuda``; committed figures go to ``benchmarks/results/``).
``--replot`` measures nothing: it redraws ``ratios.png`` and ``results.md``
from the ``results.json`` already in ``--out``. Without a GPU it says so and exits with status 0.
``--simulator`` runs it under the Numba CUDA simulator instead, with tiny
shapes only: a smoke test of the script, whose times mean nothing.

``sampler_ops`` is also the "stn_numba CUDA" implementation of
``python -m benchmarks``.
"""

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import _harness, _report, _sampler

DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "cuda"
DETERMINISTIC = "grid_sample fwd+bwd deterministic"
OPS = ("affine_grid", "grid_sample", "grid_sample fwd+bwd", DETERMINISTIC)
IMPLEMENTATIONS = {"cpu": "stn_numba CPU", "cuda": "stn_numba CUDA", "torch_cuda": "torch CUDA"}
COPY_MEGABYTES = 256


class Unavailable(Exception):
    """An implementation cannot run in this worker."""


# ------------------------------------------------------------------ the ops
def on_device(data):
    """``data`` with every array copied to the GPU (numba device arrays)."""
    from numba import cuda

    return dataclasses.replace(data, **{field.name: cuda.to_device(getattr(data, field.name))
                                        for field in dataclasses.fields(data)})


def stn_numba_ops(case, data, deterministic=False):
    """stn_numba's ops on ``data`` (host arrays run on the CPU, GPU arrays on the GPU)."""
    import stn_numba

    size = case.output_shape

    def forward_backward(options):
        def run():
            stn_numba.grid_sample(data.input, data.grid)
            return stn_numba.grid_sample_backward(data.grad_output, data.input, data.grid, **options)

        return run

    ops = {
        "affine_grid": lambda: stn_numba.affine_grid(data.theta, size),
        "grid_sample": lambda: stn_numba.grid_sample(data.input, data.grid),
        "grid_sample fwd+bwd": forward_backward({}),
    }
    if deterministic:
        ops[DETERMINISTIC] = forward_backward({"deterministic": True})
    return ops


def sampler_ops(case, data):
    """The "stn_numba CUDA" implementation of ``python -m benchmarks`` (``benchmarks._sampler``)."""
    import stn_numba

    data = on_device(data)
    ops = stn_numba_ops(case, data)
    size = case.output_shape
    if not hasattr(stn_numba, "affine_grid_sample"):
        why = "n/a: no stn_numba.affine_grid_sample"
        ops["affine_grid_sample"] = ops["affine_grid_sample fwd+bwd"] = why
        return ops

    def fused_forward_backward():
        stn_numba.affine_grid_sample(data.input, data.theta, size)
        return stn_numba.affine_grid_sample_backward(data.grad_output, data.input, data.theta, size)

    for op, function in (("affine_grid_sample", lambda: stn_numba.affine_grid_sample(data.input, data.theta, size)),
                         ("affine_grid_sample fwd+bwd", fused_forward_backward)):
        try:
            function()
            ops[op] = function
        except Exception as error:  # e.g. no CUDA twin of the fused kernel
            ops[op] = f"n/a: {type(error).__name__}: {str(error).splitlines()[0]}"
    return ops


def torch_cuda_ops(case, data):
    """torch's CUDA versions of the ops of :func:`stn_numba_ops`."""
    ops = _sampler.torch_ops(case, data, device="cuda")
    return {op: ops[op] for op in ("affine_grid", "grid_sample", "grid_sample fwd+bwd")}


# ------------------------------------------------------------------ the worker
def _numba_gpu(simulator):
    from numba import cuda

    if simulator != bool(os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"):
        raise Unavailable("NUMBA_ENABLE_CUDASIM must be set exactly when --simulator is given")
    if not cuda.is_available():
        raise Unavailable("no CUDA GPU (numba.cuda.is_available() is False)")
    return cuda


def device_info(cuda):
    """The card's name, compute capability, memory and CUDA versions."""
    device = cuda.get_current_device()
    name = getattr(device, "name", "CUDA simulator")
    info = {"name": name.decode() if isinstance(name, bytes) else str(name),
            "compute_capability": ".".join(map(str, device.compute_capability))}
    facts = {
        "memory_gib": lambda: cuda.current_context().get_memory_info()[1] / 2**30,
        "cuda_runtime": lambda: ".".join(map(str, cuda.runtime.get_version())),
        "driver": lambda: ".".join(map(str, cuda.cudadrv.driver.driver.get_version())),
    }
    for key, fact in facts.items():
        try:
            value = fact()
        except Exception:  # the simulator lacks some of them
            continue
        if value != float("inf") and "-" not in str(value):  # the simulator's placeholders
            info[key] = value
    return info


def device_copy_bandwidth(cuda, megabytes, repeats):
    """Device-to-device copy bandwidth: (read + write bytes) / median time of ``copy_to_device``."""
    count = megabytes * 2**20 // 4
    source = cuda.to_device(np.ones(count, dtype=np.float32))
    target = cuda.device_array_like(source)
    timing = _harness.time_call(lambda: target.copy_to_device(source), warmup=1, min_repeats=repeats,
                                max_repeats=repeats, sync=cuda.synchronize)
    return {"gb_per_s": 2 * source.nbytes / (timing["median_ms"] * 1e-3) / 1e9, "megabytes": megabytes, **timing}


def measure(impl, cases, quick, simulator):
    """Time ``impl``'s ops on ``cases`` in this process; returns the worker's result dict."""
    extra = {}
    if impl == "cpu":
        make_ops, sync = stn_numba_ops, None
    elif impl == "cuda":
        cuda = _numba_gpu(simulator)
        make_ops, sync = (lambda case, data: stn_numba_ops(case, on_device(data), deterministic=True)), cuda.synchronize
        extra["device"] = device_info(cuda)
        extra["copy_bandwidth"] = device_copy_bandwidth(cuda, 8 if simulator else COPY_MEGABYTES, 3 if quick else 7)
    else:
        if simulator:
            raise Unavailable("torch does not run on the CUDA simulator")
        import torch

        if not torch.cuda.is_available():
            raise Unavailable("torch sees no CUDA GPU")
        make_ops, sync = torch_cuda_ops, torch.cuda.synchronize
        extra["device"] = {"name": torch.cuda.get_device_name()}
    rows = []
    for case in cases:
        data = _sampler.make_data(case)
        for op, function in make_ops(case, data).items():
            row = {"shape": case.label, "spec": case.spec, "op": op, "impl": impl,
                   "checksum": _sampler.checksum(function())}
            row.update(_harness.time_call(function, sync=sync, **_sampler.repeat_policy(quick)))
            rows.append(row)
    return {"impl": impl, "rows": rows, **extra}


def worker(args):
    if args.worker == "cpu":
        import numba  # noqa: F401  (so that set_threads sizes its pool)
    threads = _harness.set_threads(args.threads)
    try:
        result = measure(args.worker, _sampler.parse_shapes(args.shapes), args.quick, args.simulator)
    except Unavailable as reason:
        result = {"impl": args.worker, "unavailable": str(reason)}
    _harness.emit({**result, "threads_applied": threads})
    return 0


# ------------------------------------------------------------------ the report
def annotate(rows, copy_gb_per_s):
    """Add bytes, GB/s, % of the device copy bandwidth, and ratios to the CPU and torch CUDA."""
    by_key = {(row["impl"], row["spec"], row["op"]): row for row in rows}
    for row in rows:
        case = _sampler.parse_shapes(row["spec"])[0]
        row["bytes"] = _sampler.bytes_moved(case, "grid_sample fwd+bwd" if row["op"] == DETERMINISTIC else row["op"])
        row["gb_per_s"] = row["bytes"] / (row["median_ms"] * 1e-3) / 1e9
        if row["impl"] != "cpu":
            row["percent_of_copy"] = 100 * row["gb_per_s"] / copy_gb_per_s
        cpu = by_key.get(("cpu", row["spec"], "grid_sample fwd+bwd" if row["op"] == DETERMINISTIC else row["op"]))
        if cpu is not None and row["impl"] != "cpu":
            row["speedup_vs_cpu"] = cpu["median_ms"] / row["median_ms"]
            row["rel_diff_vs_cpu"] = max((abs(a - b) / max(abs(b), 1e-30)
                                          for a, b in zip(row["checksum"], cpu["checksum"])), default=None)
        anchor = by_key.get(("torch_cuda", row["spec"], row["op"]))
        if anchor is not None and row["impl"] == "cuda":
            row["ratio_vs_torch_cuda"] = row["median_ms"] / anchor["median_ms"]
    return rows


def _number(value, digits=3):
    if value is None:
        return "—"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def table(rows, cases):
    columns = ("shape", "op", "implementation", "median ms", "IQR ms", "n", "GB/s", "% of device copy",
               "speed-up vs CPU", "ratio vs torch CUDA", "Δ vs CPU")
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    order = [case.spec for case in cases]
    impls = list(IMPLEMENTATIONS)
    for row in sorted(rows, key=lambda r: (order.index(r["spec"]), OPS.index(r["op"]), impls.index(r["impl"]))):
        ratio, speedup, diff = (row.get(k) for k in ("ratio_vs_torch_cuda", "speedup_vs_cpu", "rel_diff_vs_cpu"))
        percent = row.get("percent_of_copy")
        lines.append("| " + " | ".join([
            row["shape"], row["op"], IMPLEMENTATIONS[row["impl"]], _number(row["median_ms"]),
            _number(row["iqr_ms"], 2), str(row["repeats"]), _number(row["gb_per_s"]),
            "—" if percent is None else _number(percent, 2) + "%",
            "—" if speedup is None else f"{_number(speedup, 2)}×", "—" if ratio is None else f"{ratio:.2f}×",
            "—" if diff is None else f"{diff:.0e}"]) + " |")
    return "\n".join(lines)


def markdown(payload, cases):
    device, copy, settings = payload["device"], payload["copy_bandwidth"], payload["settings"]
    machine = payload["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    card = f"{device['name']}, compute capability {device['compute_capability']}"
    if "memory_gib" in device:
        card += f", {device['memory_gib']:.0f} GiB"
    card += "".join(f", {label} {device[key]}" for key, label in (("cuda_runtime", "CUDA runtime"),
                                                                  ("driver", "driver")) if key in device)
    lines = [
        "# stn_numba CUDA benchmark",
        "",
        f"- GPU: {card}" + (" — the CUDA SIMULATOR: these times mean nothing" if settings["simulator"] else ""),
        f"- CPU: {machine['cpu']}, {machine['usable_cpus']} usable CPUs; stn_numba CPU ran with "
        f"{settings['threads']} threads",
        f"- Versions: {versions}",
        f"- Date: {machine['date']}" + (" — quick run (tiny repeat counts, not for conclusions)"
                                        if settings["quick"] else ""),
        f"- Device-to-device copy: {copy['megabytes']} MiB, {copy['gb_per_s']:.0f} GB/s (read + write bytes / "
        "median time)",
        "- Timing: `function(); synchronize()` under `time.perf_counter` (Python dispatch and launches "
        "included), untimed warm-up calls first, median and IQR (Q3 − Q1) of n repeats; arrays already on "
        "the device; outputs allocated by each call",
        "- float32, bilinear, zeros padding, align_corners=False, thetas near the identity (fixed seed); "
        f"`{DETERMINISTIC}` is `grid_sample_backward(..., deterministic=True)`",
    ]
    lines += [f"- {IMPLEMENTATIONS[key]}: not run ({reason})" for key, reason in payload["notes"].items()]
    lines += ["", "GB/s: the op's minimal traffic over the median time; % of device copy: that as a share of "
              "the copy bandwidth. Speed-up vs CPU: stn_numba CPU's median over this one (for the deterministic "
              "row, against the CPU's fwd+bwd). Ratio vs torch CUDA: this median over torch's (below 1 is "
              "faster). Δ vs CPU: largest relative difference of the outputs' sum of |values|.", "",
              table(payload["rows"], cases), ""]
    return "\n".join(lines)


def write_report(payload, cases, out):
    """Draw ``ratios.png`` (stn_numba CUDA / torch CUDA per shape and op) and write ``results.md``
    into ``out``; returns the paths written."""
    chart = out / "ratios.png"
    skipped = _report.ratio_chart(payload["rows"], chart, [case.spec for case in cases], impl="cuda",
                                  ratio_key="ratio_vs_torch_cuda", ops=OPS,
                                  ylabel="stn_numba CUDA time / torch CUDA time")
    text = markdown(payload, cases)
    text += f"\n{'Chart not drawn: ' + skipped if skipped else '![stn_numba CUDA / torch CUDA](ratios.png)'}\n"
    (out / "results.md").write_text(text, encoding="utf-8")
    return [out / "results.md"] + ([] if skipped else [chart])


def replot(out):
    """Redraw the chart and ``results.md`` from the ``results.json`` in ``out`` (nothing is measured)."""
    payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
    cases = _sampler.parse_shapes(",".join(case["spec"] for case in payload["settings"]["cases"]))
    paths = write_report(payload, cases, out)
    print(f"[bench_cuda] wrote {' and '.join(map(str, paths))} from {out / 'results.json'}", file=sys.stderr)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_cuda",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--shapes", default="all", help="shape sets or specs, as in python -m benchmarks")
    parser.add_argument("--impl", default=",".join(IMPLEMENTATIONS),
                        help=f"comma-separated among {', '.join(IMPLEMENTATIONS)} (default: all)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="threads of stn_numba CPU (default: every usable CPU, %(default)s)")
    parser.add_argument("--quick", action="store_true", help="tiny repeat counts: a smoke run")
    parser.add_argument("--simulator", action="store_true",
                        help="run under the Numba CUDA simulator (tiny shapes; a smoke test of this script)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per worker (default: %(default)s)")
    parser.add_argument("--replot", action="store_true",
                        help="measure nothing: redraw ratios.png and results.md from --out's results.json")
    parser.add_argument("--worker", choices=sorted(IMPLEMENTATIONS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.replot:
        return replot(args.out)
    try:
        cases = _sampler.parse_shapes(args.shapes)
        impls = [key.strip() for key in args.impl.split(",") if key.strip()]
        unknown = [key for key in impls if key not in IMPLEMENTATIONS]
        if unknown or "cuda" not in impls:
            raise ValueError(f"--impl: expected a list among {', '.join(IMPLEMENTATIONS)} that includes cuda, "
                             f"got {args.impl!r}")
        if args.simulator and max(np.prod(case.input_shape) for case in cases) > 4096:
            raise ValueError("--simulator runs Python for every GPU thread: use --shapes tiny")
    except ValueError as error:
        parser.error(str(error))
    environment = {"NUMBA_ENABLE_CUDASIM": "1" if args.simulator else None}
    started = time.perf_counter()
    results, notes = {}, {}
    for impl in ["cuda"] + [key for key in impls if key != "cuda"]:  # the GPU first: no GPU, no report
        print(f"[bench_cuda] {IMPLEMENTATIONS[impl]}: {len(cases)} shapes", file=sys.stderr, flush=True)
        worker_args = ["--worker", impl, "--shapes", ",".join(case.spec for case in cases),
                       "--threads", args.threads] + ["--quick"] * args.quick + ["--simulator"] * args.simulator
        try:
            result = _harness.run_worker("benchmarks.bench_cuda", worker_args,
                                         threads=args.threads if impl == "cpu" else 1, env=environment,
                                         timeout=args.timeout)
        except _harness.WorkerError as error:
            result = {"unavailable": f"worker failed: {error}"}
        if "unavailable" in result:
            if impl == "cuda":
                print(f"bench_cuda: nothing to measure: {result['unavailable']}. Run it on a machine with an "
                      "NVIDIA GPU and its driver (or with --simulator and --shapes tiny as a smoke test).",
                      file=sys.stderr)
                return 0
            notes[impl] = result["unavailable"]
            print(f"[bench_cuda] {IMPLEMENTATIONS[impl]}: skipped ({result['unavailable']})", file=sys.stderr)
            continue
        results[impl] = result
    rows = annotate([row for result in results.values() for row in result["rows"]],
                    results["cuda"]["copy_bandwidth"]["gb_per_s"])
    payload = {
        "machine": _harness.machine_info(args.threads),
        "device": results["cuda"]["device"],
        "copy_bandwidth": results["cuda"]["copy_bandwidth"],
        "settings": {"threads": args.threads, "quick": args.quick, "simulator": args.simulator,
                     "impls": list(results), "ops": list(OPS),
                     "cases": [{**dataclasses.asdict(case), "spec": case.spec, "label": case.label}
                               for case in cases],
                     "repeat_policy": _sampler.repeat_policy(args.quick)},
        "rows": rows,
        "notes": notes,
        "elapsed_s": time.perf_counter() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    paths = [args.out / "results.json"] + write_report(payload, cases, args.out)
    print(table(rows, cases))
    print(f"[bench_cuda] wrote {', '.join(map(str, paths))} in {payload['elapsed_s']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
