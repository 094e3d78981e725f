"""Writing a benchmark run: ``results.json``, ``results.md`` and ``ratios.png``."""

import json
from pathlib import Path

from . import _fixed
from ._sampler import IMPLEMENTATIONS, OPS

COLUMNS = ("shape", "op", "implementation", "median ms", "IQR ms", "n", "rounds' medians ms", "ratio vs torch",
           "GB/s", "% of copy floor", "floor ms", "Δ vs torch")


def _number(value, digits=3):
    """``value`` with ``digits`` significant digits, or an em dash."""
    if value is None:
        return "—"
    return f"{value:.{digits}g}" if abs(value) < 10 ** digits else f"{value:.0f}"


def _row_order(rows, shape_order):
    impl_order = list(IMPLEMENTATIONS)
    return sorted(rows, key=lambda row: (shape_order.index(row["spec"]), OPS.index(row["op"]),
                                         impl_order.index(row["impl"])))


def timing_table(rows, shape_order):
    """The timings as a markdown table, one row per shape × op × implementation."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in _row_order(rows, shape_order):
        if "median_ms" not in row:
            cells = [row["shape"], row["op"], row["label"], row.get("note", "n/a")] + ["—"] * (len(COLUMNS) - 4)
        else:
            ratio = row.get("ratio_vs_torch")
            diff = row.get("rel_diff_vs_torch")
            rounds = row.get("round_medians_ms", [row["median_ms"]])
            cells = [
                row["shape"], row["op"], row["label"], _number(row["median_ms"]), _number(row["iqr_ms"], 2),
                str(row["repeats"]), "–".join(_number(value) for value in (min(rounds), max(rounds))),
                "—" if ratio is None else f"{ratio:.2f}×", _number(row["gb_per_s"]),
                _number(row["floor_percent"], 2) + "%", _number(row["floor_ms"]),
                "—" if diff is None else f"{diff:.0e}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def startup_table(startup):
    """The start-up figures as a markdown table (or the reason they are missing)."""
    if "skipped" in startup:
        return f"Not measured: {startup['skipped']}."
    warm, cold = startup["warm"], startup["cold"]
    lines = [
        f"{startup['dtype']} kernels, {startup['threads']} threads. Warm: on-disk cache filled, median of "
        f"{warm['runs']} processes. Cold: empty private `NUMBA_CACHE_DIR`; a family's first call is its compile.",
        "",
        "| measure | seconds |",
        "|---|---|",
        f"| warm: `import stn_numba` | {warm['import_s']:.3f} |",
        f"| warm: first call ({warm['first_call']}) | {warm['first_call_s']:.3f} |",
        f"| warm: import + first call | {warm['import_and_first_call_s']:.3f} |",
        f"| warm: whole process (interpreter start included) | {warm['wall_s']:.3f} |",
        f"| cold: `import stn_numba` | {cold['import_s']:.3f} |",
    ]
    lines += [f"| cold: first call (compile) of {name} | {seconds:.3f} |"
              for name, seconds in cold["compile_s"].items()]
    lines.append(f"| cold: compile total | {sum(cold['compile_s'].values()):.3f} |")
    return "\n".join(lines)


def markdown(payload):
    """The whole report as markdown: machine header, settings, timings, start-up."""
    machine, bandwidth, settings = payload["machine"], payload["copy_bandwidth"], payload["settings"]
    policy = settings["repeat_policy"]
    versions = ", ".join(f"{name} {version}" for name, version in machine["versions"].items())
    lines = [
        "# stn_numba benchmark",
        "",
        f"- Machine: {machine['cpu']}, {machine['logical_cpus']} logical CPUs "
        f"({machine['usable_cpus']} usable), {machine['platform']}",
        f"- Threads per implementation: {settings['threads']} (each implementation in its own process)",
        f"- Versions: {versions}",
        f"- BLAS kernels: {machine.get('blas', 'not recorded')}",
        f"- Date: {machine['date']}" + (" — quick run (tiny repeat counts, not for conclusions)"
                                        if settings["quick"] else ""),
        f"- Memory-copy floor: `np.copyto` of {bandwidth['megabytes']} MiB, one thread: "
        f"{bandwidth['gb_per_s']:.1f} GB/s (read + write bytes / time)",
        f"- Timing: {policy['warmup']} untimed warm-up call(s) after a first (compiling) call, then at least "
        f"{policy['min_repeats']} and at most {policy['max_repeats']} timed calls "
        f"(until {policy['budget_s']} s is spent); median and IQR (Q3 − Q1) of `time.perf_counter`; n = repeats; "
        f"{settings.get('rounds', 1)} round(s) per row, every implementation's worker (alive throughout) timing it in "
        "turn within each: a row is the round whose median is the median of the rounds' medians, whose lowest and "
        "highest it also gives",
        "- float32, bilinear, zeros padding, align_corners=False, thetas near the identity (fixed seed); "
        "`grid_sample border` / `reflection` / `nearest` / `bicubic` rows change only the mode or padding",
    ]
    for label, reason in payload["notes"].items():
        lines.append(f"- {label}: not run ({reason.splitlines()[0]})")
    lines += [
        "",
        "## Timings",
        "",
        "ratio vs torch: median time / torch CPU's median for the same shape and op (below 1 is faster). "
        "% of copy floor: the time the op's minimal traffic (bytes) would take at the copy bandwidth, "
        "as a share of the measured time (100% = at the floor). Δ vs torch: largest relative difference "
        "of the outputs' sum of |values| (a sanity check that both computed the same thing).",
        "",
        timing_table(payload["rows"], [case["spec"] for case in settings["cases"]]),
        "",
        "## Fixed cost of one call",
        "",
        _fixed.table(payload["fixed_cost"]) if payload.get("fixed_cost") else "Not measured.",
        "",
        "## Start-up",
        "",
        startup_table(payload["startup"]),
        "",
    ]
    return "\n".join(lines)


def ratio_chart(rows, path, shape_order, *, impl="stn_numba", ratio_key="ratio_vs_torch", ops=OPS,
                ylabel="stn_numba CPU time / torch CPU time"):
    """Bar chart of ``impl``'s rows' ``ratio_key`` (by default stn_numba CPU / torch CPU) per shape and
    op, log scale, ops in the order of ``ops``; returns None or why it was skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return "matplotlib is not installed"
    ratios = {(row["spec"], row["op"]): (row["shape"], row[ratio_key])
              for row in rows if row["impl"] == impl and row.get(ratio_key) is not None}
    if not ratios:
        return f"no timings to compare ({ylabel})"
    shapes = [spec for spec in shape_order if any(spec == key[0] for key in ratios)]
    ops = [op for op in ops if any(op == key[1] for key in ratios)]
    width = 0.8 / len(ops)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.6 * len(shapes)), 4.5))
    for index, op in enumerate(ops):
        positions = [s + (index - (len(ops) - 1) / 2) * width for s in range(len(shapes))]
        heights = [ratios.get((spec, op), (None, float("nan")))[1] for spec in shapes]
        bars = axes.bar(positions, heights, width, label=op)
        axes.bar_label(bars, fmt="%.2g", fontsize=6)
    labels = {spec: label for (spec, _), (label, _) in ratios.items()}
    axes.set_xticks(range(len(shapes)), [labels[spec] for spec in shapes], rotation=20, ha="right")
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axes.yaxis.set_minor_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False))
    axes.set_ylabel(ylabel)
    axes.set_title("Below 1: stn_numba is faster")
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return None


def write(payload, out_dir):
    """Write ``results.json``, ``results.md`` and ``ratios.png`` into ``out_dir``; return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shape_order = [case["spec"] for case in payload["settings"]["cases"]]
    chart = out_dir / "ratios.png"
    skipped = ratio_chart(payload["rows"], chart, shape_order)
    payload["chart"] = {"skipped": skipped} if skipped else {"path": chart.name}
    text = markdown(payload)
    text += f"\n{'Chart not drawn: ' + skipped if skipped else '![stn_numba / torch](ratios.png)'}\n"
    (out_dir / "results.md").write_text(text, encoding="utf-8")
    (out_dir / "results.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    return [out_dir / name for name in ("results.json", "results.md")] + ([] if skipped else [chart])
