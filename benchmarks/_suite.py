"""The command line of ``python -m benchmarks`` (and of the entry points built on it)."""

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from . import _fixed, _harness, _report, _sampler, _startup

DEFAULT_OUT = Path(__file__).resolve().parent / "out"


def parser(description, defaults):
    """The argument parser; ``defaults`` overrides option defaults (for thin entry points)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=description)
    p.add_argument("--quick", action="store_true",
                   help="tiny repeat counts and a small copy-bandwidth probe: a smoke run, not for conclusions")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="threads of every implementation (default: 2)")
    p.add_argument("--rounds", type=int, default=None,
                   help="rounds of worker processes, the implementations in turn within each; a row is the "
                        "round with the median median (default: 3, --quick 1)")
    p.add_argument("--impl", default="all",
                   help=f"comma-separated implementations among {', '.join(_sampler.IMPLEMENTATIONS)}, "
                        "or 'all' (default); torch is the ratios' anchor")
    p.add_argument("--shapes", default="all",
                   help=f"comma-separated shape sets ({', '.join(s for s in _sampler.SHAPE_SETS if s != 'tiny')}) "
                        "or NxCxHxW[:HoxWo] specs (default: all)")
    p.add_argument("--ops", default=",".join(_sampler.OPS),
                   help=f"comma-separated ops among: {', '.join(_sampler.OPS)} (default: all)")
    p.add_argument("--no-startup", dest="startup", action="store_false",
                   help="skip the start-up measurement (import and cold-cache compile times)")
    p.add_argument("--startup-families", default="",
                   help="comma-separated kernel families to compile cold, e.g. 'affine_grid 2-D' (default: all; "
                        "the warm first call is grid_sample 2-D if listed, else the first listed)")
    p.add_argument("--timeout", type=float, default=1800,
                   help="seconds per worker process, or per answer of a serving worker (default: 1800)")
    p.set_defaults(**defaults)
    return p


def log(message):
    """Progress goes to stderr, so stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)


def _choices(text, allowed, option):
    chosen = list(allowed) if text == "all" else [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in chosen if item not in allowed]
    if unknown or not chosen:
        raise ValueError(f"{option}: expected 'all' or a comma-separated list of {', '.join(allowed)}, "
                         f"got {text!r}")
    return chosen


def main(argv=None, description="Benchmark stn_numba's affine_grid and grid_sample against torch, "
                                  "scipy and OpenCV.", **defaults):
    """Run the benchmark and write its report; returns the process exit code."""
    p = parser(description, defaults)
    args = p.parse_args(argv)
    try:
        cases = _sampler.parse_shapes(args.shapes)
        impls = _choices(args.impl, _sampler.IMPLEMENTATIONS, "--impl")
        ops = _choices(args.ops, _sampler.OPS, "--ops")
        if args.threads < 1:
            raise ValueError(f"--threads: expected a positive integer, got {args.threads}")
        if args.rounds is None:
            args.rounds = 1 if args.quick else 3
        if args.rounds < 1:
            raise ValueError(f"--rounds: expected a positive integer, got {args.rounds}")
    except ValueError as error:
        p.error(str(error))
    started = time.perf_counter()
    log("[bench] measuring the memory-copy bandwidth")
    bandwidth = _harness.copy_bandwidth(megabytes=32 if args.quick else 256, repeats=3 if args.quick else 7)
    rows, notes = _sampler.collect(impls, cases, ops, args.threads, args.quick, args.rounds,
                                   timeout=args.timeout, log=log)
    _sampler.annotate(rows, bandwidth["gb_per_s"])
    log("[bench] fixed cost per call (1×1×4×4)")
    fixed = _fixed.collect(impls, args.threads, args.quick, timeout=args.timeout, log=log)
    if args.startup:
        log("[bench] start-up: cold-cache compile, then warm-cache import")
        try:
            families = [name.strip() for name in args.startup_families.split(",") if name.strip()]
            startup = _startup.measure_startup(args.threads, families=families, warm_runs=1 if args.quick else 3,
                                               timeout=args.timeout)
        except _harness.WorkerError as error:
            startup = {"skipped": f"worker failed: {error}"}
    else:
        startup = {"skipped": "--no-startup"}
    payload = {
        "machine": _harness.machine_info(args.threads),
        "copy_bandwidth": bandwidth,
        "settings": {
            "threads": args.threads, "quick": args.quick, "impls": impls, "ops": ops,
            "cases": [{**dataclasses.asdict(case), "spec": case.spec, "label": case.label} for case in cases],
            "rounds": args.rounds, "repeat_policy": _sampler.repeat_policy(args.quick, args.rounds),
        },
        "rows": rows,
        "fixed_cost": fixed,
        "notes": notes,
        "startup": startup,
        "elapsed_s": time.perf_counter() - started,
    }
    paths = _report.write(payload, args.out)
    print(_report.timing_table(rows, [case.spec for case in cases]))
    if fixed:
        print()
        print(_fixed.table(fixed))
    if "skipped" not in startup:
        print()
        print(_report.startup_table(startup))
    for label, reason in notes.items():
        print(f"{label}: not run ({reason.splitlines()[0]})")
    log(f"[bench] wrote {', '.join(map(str, paths))} in {payload['elapsed_s']:.0f} s")
    return 0
