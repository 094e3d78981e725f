"""The sampler benchmark: cases, inputs, byte counts, implementations and their worker.

Run as ``python -m benchmarks._sampler --impl NAME ...`` it is a serving worker
that times rows of one implementation on request (see
:mod:`benchmarks._harness`); :func:`collect` starts one such worker per
implementation, has them take turns on every row and returns the table rows.
"""

import argparse
import importlib.util
import math
import sys
from dataclasses import dataclass

import numpy as np

from . import _harness

#: Forward variants beyond bilinear/zeros: op name -> (mode, padding_mode, 2-D only).
VARIANTS = {
    "grid_sample border": ("bilinear", "border", False),
    "grid_sample reflection": ("bilinear", "reflection", False),
    "grid_sample nearest": ("nearest", "zeros", False),
    "grid_sample bicubic": ("bicubic", "zeros", True),
}

#: Operations, in table order. The fused op is timed against affine_grid + grid_sample.
OPS = ("affine_grid", "grid_sample", *VARIANTS, "grid_sample fwd+bwd", "affine_grid_sample",
       "affine_grid_sample fwd+bwd")


def variant_ops(case, sample):
    """``{op: callable}`` for the forward variants that apply to ``case``; ``sample(mode, padding_mode)``
    returns the callable of one variant."""
    return {op: sample(mode, padding) for op, (mode, padding, planar) in VARIANTS.items()
            if case.spatial == 2 or not planar}

BYTES_PER_VALUE = 4  # every case is float32


@dataclass(frozen=True)
class Case:
    """One benchmark shape: input (N, C, *spatial) sampled onto ``output_spatial``."""

    input_shape: tuple
    output_spatial: tuple

    @property
    def spatial(self):
        return len(self.input_shape) - 2

    @property
    def output_shape(self):
        return tuple(self.input_shape[:2]) + tuple(self.output_spatial)

    @property
    def label(self):
        out = self.output_spatial
        side = f"{out[0]}{'²' if len(out) == 2 else '³'}" if len(set(out)) == 1 else "×".join(map(str, out))
        return f"{'×'.join(map(str, self.input_shape))} → {side}"

    @property
    def spec(self):
        """The ``--shapes`` spelling of this case."""
        return f"{'x'.join(map(str, self.input_shape))}:{'x'.join(map(str, self.output_spatial))}"


def _case(*input_shape, out=None):
    return Case(tuple(input_shape), tuple(out if out is not None else input_shape[2:]))


#: Named shape sets for ``--shapes``.
SHAPE_SETS = {
    "all": (
        _case(256, 1, 28, 28),
        _case(32, 3, 224, 224),
        _case(16, 64, 56, 56),
        _case(1, 1, 2048, 2048),
        _case(64, 3, 128, 128, out=(64, 64)),
        _case(4, 1, 64, 64, 64),
    ),
    # The "Core" issue's first benchmark.
    "sampler": (
        _case(256, 1, 28, 28),
        _case(32, 3, 224, 224),
        _case(16, 64, 56, 56),
        _case(1, 1, 2048, 2048),
    ),
    # Small inputs, as a pipeline that warps one image or a few at a time meets them: microseconds
    # of work, where a call's fixed cost and a kernel's start count.
    "small": (
        _case(1, 1, 32, 32),
        _case(2, 1, 28, 28),
        _case(8, 1, 28, 28),
        _case(1, 1, 64, 64),
        _case(4, 3, 32, 32),
    ),
    # For smoke tests: every code path, milliseconds of work.
    "tiny": (
        _case(2, 1, 8, 8),
        _case(2, 3, 12, 12, out=(6, 6)),
        _case(1, 2, 6, 6, 6, out=(4, 4, 4)),
    ),
}


def parse_shapes(text):
    """Cases from ``--shapes``: set names and ``NxCxHxW[:HoxWo]`` specs, comma-separated.

    Raises
    ------
    ValueError
        For an unknown set name or a malformed spec.
    """
    cases = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if item in SHAPE_SETS:
            cases.extend(SHAPE_SETS[item])
            continue
        input_text, _, output_text = item.partition(":")
        try:
            input_shape = tuple(int(v) for v in input_text.split("x"))
            output = tuple(int(v) for v in output_text.split("x")) if output_text else input_shape[2:]
        except ValueError:
            input_shape = output = ()
        if len(input_shape) not in (4, 5) or len(output) != len(input_shape) - 2 or min(input_shape + output) < 1:
            raise ValueError(f"--shapes: expected a set name ({', '.join(SHAPE_SETS)}) or "
                             f"NxCxHxW[:HoxWo] / NxCxDxHxW[:DoxHoxWo] with positive sizes, got {item!r}")
        cases.append(Case(input_shape, output))
    if not cases:
        raise ValueError("--shapes: no shape given")
    return cases


@dataclass
class Data:
    """The arrays of one case, shared by every implementation (float32, C-contiguous)."""

    input: np.ndarray
    theta: np.ndarray
    grid: np.ndarray
    grad_output: np.ndarray


def random_thetas(rng, count, spatial):
    """Affine matrices near the identity: rotation ≤ 0.2 rad, scale 0.9–1.1, shift ≤ 0.1."""
    from scipy.spatial.transform import Rotation

    if spatial == 2:
        rotvecs = np.zeros((count, 3))
        rotvecs[:, 2] = rng.uniform(-0.2, 0.2, count)
    else:
        rotvecs = rng.uniform(-0.2, 0.2, (count, 3)) / math.sqrt(3)
    rotations = Rotation.from_rotvec(rotvecs).as_matrix()[:, :spatial, :spatial]
    scales = rng.uniform(0.9, 1.1, (count, 1, 1))
    shifts = rng.uniform(-0.1, 0.1, (count, spatial, 1))
    return np.concatenate([scales * rotations, shifts], axis=2).astype(np.float32)


def normalized_coordinates(size):
    """Pixel centres of an axis of ``size`` in [-1, 1] (align_corners=False)."""
    return (2 * np.arange(size) + 1) / size - 1


def affine_grid_numpy(theta, output_shape):
    """``F.affine_grid(theta, output_shape, align_corners=False)`` in NumPy (float64 math)."""
    spatial = output_shape[2:]
    axes = np.meshgrid(*(normalized_coordinates(s) for s in spatial), indexing="ij")
    base = np.stack(list(axes)[::-1] + [np.ones(spatial)], axis=-1)  # (..., x, y[, z], 1)
    return np.einsum("...j,nkj->n...k", base, theta.astype(np.float64))


def make_data(case, seed=0):
    """Random input, thetas near the identity, their grid and a grad_output (fixed seed)."""
    rng = np.random.default_rng(seed)
    theta = random_thetas(rng, case.input_shape[0], case.spatial)
    return Data(
        input=rng.standard_normal(case.input_shape, dtype=np.float32),
        theta=theta,
        grid=np.ascontiguousarray(affine_grid_numpy(theta, case.output_shape), dtype=np.float32),
        grad_output=rng.standard_normal(case.output_shape, dtype=np.float32),
    )


def bytes_moved(case, op):
    """Bytes ``op`` must move at least: each array read or written once per pass.

    Forward: input read, grid read, output write (the whole input is counted:
    near-identity grids touch all of it). Backward adds grad_output read,
    input and grid re-read, grad_input and grad_grid written. The fused op
    never stores a grid; affine_grid only writes one. Thetas are negligible.
    """
    values_in = math.prod(case.input_shape)
    values_out = math.prod(case.output_shape)
    values_grid = case.input_shape[0] * math.prod(case.output_spatial) * case.spatial
    counts = {
        "affine_grid": values_grid,
        "grid_sample": values_in + values_grid + values_out,
        **{op: values_in + values_grid + values_out for op in VARIANTS},
        "grid_sample fwd+bwd": (values_in + values_grid + values_out)
        + (values_out + values_in + values_grid + values_in + values_grid),
        "affine_grid_sample": values_in + values_out,
        "affine_grid_sample fwd+bwd": (values_in + values_out) + (values_out + values_in + values_in),
    }
    return counts[op] * BYTES_PER_VALUE


def pixel_affine(theta, input_spatial, output_spatial):
    """Per-image pixel-space affine maps equivalent to ``theta`` (align_corners=False).

    Returns ``(matrix, offset)`` with ``source = matrix @ target + offset`` in
    array axis order (z, y, x), as ``scipy.ndimage.affine_transform`` takes them.
    """
    # theta works on normalised (x, y, z); flip the sizes to that order.
    size_in = np.array(input_spatial[::-1], dtype=np.float64)
    size_out = np.array(output_spatial[::-1], dtype=np.float64)
    linear = theta[:, :, :-1].astype(np.float64)
    shift = theta[:, :, -1].astype(np.float64)
    # target pixel i -> normalised (2i + 1)/O - 1; normalised g -> source pixel ((g + 1) I - 1)/2
    matrix_xyz = (size_in / 2)[:, None] * linear * (2 / size_out)[None, :]
    offset_xyz = (size_in / 2) * (np.einsum("nij,j->ni", linear, 1 / size_out - 1) + shift) + (size_in - 1) / 2
    return matrix_xyz[:, ::-1, ::-1], offset_xyz[:, ::-1]


def pixel_coordinates(grid, input_spatial):
    """Source pixel coordinates of ``grid`` (…, x[, y[, z]]) in axis order (z, y, x), float32."""
    sizes = np.array(input_spatial[::-1], dtype=np.float32)
    pixels = ((grid + np.float32(1)) * sizes - np.float32(1)) * np.float32(0.5)
    return np.ascontiguousarray(np.moveaxis(pixels[..., ::-1], -1, 0))


# Implementations: each returns {op: callable} for a case. Ops it does not do are left
# out; an op it should do but cannot yet maps to a string saying why (an "n/a" row).

def stn_numba_ops(case, data):
    import stn_numba

    size = case.output_shape
    ops = {
        "affine_grid": lambda: stn_numba.affine_grid(data.theta, size),
        "grid_sample": lambda: stn_numba.grid_sample(data.input, data.grid),
    }

    def forward_backward():
        stn_numba.grid_sample(data.input, data.grid)
        return stn_numba.grid_sample_backward(data.grad_output, data.input, data.grid)

    ops["grid_sample fwd+bwd"] = forward_backward
    ops.update(variant_ops(case, lambda mode, padding: lambda: stn_numba.grid_sample(
        data.input, data.grid, mode, padding)))
    if hasattr(stn_numba, "affine_grid_sample"):
        ops["affine_grid_sample"] = lambda: stn_numba.affine_grid_sample(data.input, data.theta, size)

        def fused_forward_backward():
            stn_numba.affine_grid_sample(data.input, data.theta, size)
            return stn_numba.affine_grid_sample_backward(data.grad_output, data.input, data.theta, size)

        ops["affine_grid_sample fwd+bwd"] = fused_forward_backward
    else:
        ops["affine_grid_sample"] = ops["affine_grid_sample fwd+bwd"] = "n/a: no stn_numba.affine_grid_sample"
    return ops


def torch_ops(case, data, device="cpu"):
    """torch's ops on ``data``, on ``device`` (on the CPU the tensors share the arrays' memory)."""
    import torch
    import torch.nn.functional as F

    size = case.output_shape
    x, grid, theta, grad_output = (torch.as_tensor(a, device=device)
                                   for a in (data.input, data.grid, data.theta, data.grad_output))
    options = {"mode": "bilinear", "padding_mode": "zeros", "align_corners": False}

    def grid_sample():
        with torch.no_grad():
            return F.grid_sample(x, grid, **options)

    def forward_backward():
        leaves = (x.detach().requires_grad_(), grid.detach().requires_grad_())
        return torch.autograd.grad(F.grid_sample(*leaves, **options), leaves, grad_output)

    def fused():
        with torch.no_grad():
            return F.grid_sample(x, F.affine_grid(theta, size, align_corners=False), **options)

    def fused_forward_backward():
        leaves = (x.detach().requires_grad_(), theta.detach().requires_grad_())
        output = F.grid_sample(leaves[0], F.affine_grid(leaves[1], size, align_corners=False), **options)
        return torch.autograd.grad(output, leaves, grad_output)

    def variant(mode, padding):
        def sample():
            with torch.no_grad():
                return F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=False)
        return sample

    return {
        "affine_grid": lambda: F.affine_grid(theta, size, align_corners=False),
        "grid_sample": grid_sample,
        **variant_ops(case, variant),
        "grid_sample fwd+bwd": forward_backward,
        "affine_grid_sample": fused,
        "affine_grid_sample fwd+bwd": fused_forward_backward,
    }


def scipy_ops(case, data):
    from scipy import ndimage

    input_spatial = case.input_shape[2:]
    options = {"order": 1, "mode": "grid-constant", "cval": 0.0, "prefilter": False}

    def map_coordinates():
        output = np.empty(case.output_shape, dtype=np.float32)
        for n in range(case.input_shape[0]):
            coordinates = pixel_coordinates(data.grid[n], input_spatial)
            for c in range(case.input_shape[1]):
                ndimage.map_coordinates(data.input[n, c], coordinates, output=output[n, c], **options)
        return output

    def affine_transform():
        output = np.empty(case.output_shape, dtype=np.float32)
        matrices, offsets = pixel_affine(data.theta, input_spatial, case.output_spatial)
        for n in range(case.input_shape[0]):
            for c in range(case.input_shape[1]):
                ndimage.affine_transform(data.input[n, c], matrices[n], offsets[n], output=output[n, c],
                                         output_shape=case.output_spatial, **options)
        return output

    return {"grid_sample": map_coordinates, "affine_grid_sample": affine_transform}


def opencv_ops(case, data):
    import cv2

    if case.spatial != 2:
        return {}
    options = {"interpolation": cv2.INTER_LINEAR, "borderMode": cv2.BORDER_CONSTANT, "borderValue": 0}
    height, width = case.output_spatial

    def remap():
        output = np.empty(case.output_shape, dtype=np.float32)
        for n in range(case.input_shape[0]):
            map_y, map_x = pixel_coordinates(data.grid[n], case.input_shape[2:])
            for c in range(case.input_shape[1]):
                cv2.remap(data.input[n, c], map_x, map_y, dst=output[n, c], **options)
        return output

    def warp_affine():
        output = np.empty(case.output_shape, dtype=np.float32)
        matrices, offsets = pixel_affine(data.theta, case.input_shape[2:], case.output_spatial)
        # OpenCV wants the (x, y) order and, with WARP_INVERSE_MAP, the target -> source map.
        maps = np.concatenate([matrices[:, ::-1, ::-1], offsets[:, ::-1, None]], axis=2)
        flags = options["interpolation"] | cv2.WARP_INVERSE_MAP
        for n in range(case.input_shape[0]):
            for c in range(case.input_shape[1]):
                cv2.warpAffine(data.input[n, c], maps[n], (width, height), dst=output[n, c], flags=flags,
                               borderMode=options["borderMode"], borderValue=options["borderValue"])
        return output

    return {"grid_sample": remap, "affine_grid_sample": warp_affine}


def cuda_ops(case, data):
    from . import bench_cuda

    return bench_cuda.sampler_ops(case, data)


def _cuda_unavailable():
    if importlib.util.find_spec("benchmarks.bench_cuda") is None:
        return "benchmarks/bench_cuda.py not present"
    return None


class Unavailable(Exception):
    """An implementation cannot run in this worker (e.g. no GPU)."""


def _cuda_sync():
    from numba import cuda

    if not cuda.is_available():
        raise Unavailable("no GPU")
    return cuda.synchronize


@dataclass(frozen=True)
class Implementation:
    """A benchmarked implementation: what it needs, how it names itself, its ops."""

    key: str
    label: str
    modules: tuple  # importable modules it needs
    make_ops: object  # (case, data) -> {op: callable or "n/a: why"}
    unavailable: object = None  # () -> None or a reason, checked in the parent
    sync: object = None  # () -> a function ending each timed call (GPU), or raises Unavailable


IMPLEMENTATIONS = {
    impl.key: impl for impl in (
        Implementation("stn_numba", "stn_numba CPU", ("stn_numba",), stn_numba_ops),
        Implementation("torch", "torch CPU", ("torch",), torch_ops),
        Implementation("scipy", "scipy.ndimage", ("scipy",), scipy_ops),
        Implementation("opencv", "OpenCV", ("cv2",), opencv_ops),
        Implementation("cuda", "stn_numba CUDA", ("numba",), cuda_ops, _cuda_unavailable, _cuda_sync),
    )
}


def unavailable_reason(impl):
    """Why ``impl`` cannot run here (checked without importing it), or None."""
    for module in impl.modules:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    return impl.unavailable() if impl.unavailable else None


def checksum(result):
    """Sum of |values| of each array in ``result`` (a host, torch or device array, or a tuple)."""
    items = result if isinstance(result, (tuple, list)) else (result,)
    sums = []
    for item in items:
        if item is None:
            continue
        if hasattr(item, "detach"):
            item = item.detach().cpu().numpy()
        elif hasattr(item, "copy_to_host"):
            item = item.copy_to_host()
        sums.append(float(np.sum(np.abs(np.asarray(item)), dtype=np.float64)))
    return sums


def repeat_policy(quick, rounds=1):
    """Keyword arguments of :func:`benchmarks._harness.time_call` for a full or a quick run of
    ``rounds`` rounds (the 2 s a row is given are shared among them)."""
    if quick:
        return {"warmup": 1, "min_repeats": 2, "max_repeats": 3, "budget_s": 0.0}
    return {"warmup": 2, "min_repeats": 7, "max_repeats": 200, "budget_s": round(2.0 / rounds, 3)}


class _RowTimer:
    """A serving worker's handler: times one implementation's row ``{"spec", "op"}``.

    It keeps the data and ops of the latest case; a row's first call
    (compiling, for Numba) gives its checksum. Answers a table row, or {} for
    an op the implementation does not have.
    """

    def __init__(self, impl, sync, policy):
        self.impl, self.sync, self.policy = impl, sync, policy
        self.case, self.ops, self.checksums = None, {}, {}

    def __call__(self, request):
        if self.case is None or self.case.spec != request["spec"]:
            self.ops = {}  # the last case's data goes before the next is made
            self.case = parse_shapes(request["spec"])[0]
            self.ops = self.impl.make_ops(self.case, make_data(self.case))
        op, case = request["op"], self.case
        row = {"shape": case.label, "spec": case.spec, "op": op, "impl": self.impl.key, "label": self.impl.label}
        if op not in self.ops:
            return {}  # not something this implementation does
        function = self.ops[op]
        if not callable(function):
            return {**row, "note": function}
        if (case.spec, op) not in self.checksums:
            try:
                self.checksums[case.spec, op] = checksum(function())
            except Exception as error:  # one broken op (e.g. a changed signature) must not hide the others
                message = (str(error).splitlines() or [""])[0]
                return {**row, "note": f"error: {type(error).__name__}: {message}"}
        row["checksum"] = self.checksums[case.spec, op]
        row.update(_harness.time_call(function, sync=self.sync, **self.policy))
        return row


def main(argv=None):
    parser = argparse.ArgumentParser(description="Serving worker: times rows of one implementation of the "
                                                 "sampler ops (benchmarks._harness.Worker).")
    parser.add_argument("--impl", required=True, choices=sorted(IMPLEMENTATIONS))
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)
    impl = IMPLEMENTATIONS[args.impl]
    for module in impl.modules:
        __import__(module)
    threads = _harness.set_threads(args.threads)
    try:
        sync = impl.sync() if impl.sync else None
    except Unavailable as reason:
        _harness.emit({"unavailable": str(reason)})
        return
    _harness.emit({"threads_applied": threads})
    _harness.serve(_RowTimer(impl, sync, repeat_policy(args.quick, args.rounds)))


def _start_workers(impl_keys, threads, quick, rounds, timeout, log):
    """The serving workers of the implementations that can run, and why the others cannot (by label)."""
    reasons = {key: unavailable_reason(IMPLEMENTATIONS[key]) for key in impl_keys}
    workers, failed = _harness.start_workers(
        "benchmarks._sampler", [key for key, reason in reasons.items() if reason is None],
        lambda key: ["--impl", key, "--threads", threads, "--rounds", rounds] + ["--quick"] * quick,
        threads=threads, timeout=timeout)
    reasons.update(failed)
    notes = {IMPLEMENTATIONS[key].label: reason for key, reason in reasons.items() if reason is not None}
    for label, reason in notes.items():
        log(f"[bench] {label}: skipped ({reason.splitlines()[0]})")
    return workers, notes


def collect(impl_keys, cases, ops, threads, quick, rounds=1, timeout=None, log=print):
    """Time every row with one serving worker per implementation, all alive
    together: for each case and op, ``rounds`` rounds, the implementations in
    turn within each (the order rotating from round to round), so that a slow
    phase of the machine falls on all of them alike. Returns ``(rows, notes)``,
    rows merged over the rounds by :func:`merge_rounds`.

    ``notes`` maps an implementation that gave no rows to the reason (not
    installed, no GPU, or the worker's error).
    """
    rounds_rows = [[] for _ in range(rounds)]
    workers, notes = _start_workers(impl_keys, threads, quick, rounds, timeout, log)
    try:
        for case in cases:
            if not workers:
                break  # none can run (the notes say why)
            log(f"[bench] {case.label}: {', '.join(workers)} in turn, {rounds} round(s), threads={threads}")
            for op in ops:
                for number, round_rows in enumerate(rounds_rows):
                    for key in _harness.rotated(workers, number):
                        try:
                            row = workers[key].request({"spec": case.spec, "op": op})
                        except _harness.WorkerError as error:
                            notes[IMPLEMENTATIONS[key].label] = f"worker failed: {error}"
                            log(f"[bench] {IMPLEMENTATIONS[key].label}: worker failed ({error})")
                            workers.pop(key).close()
                            continue
                        if row:
                            round_rows.append(row)
    finally:
        for worker in workers.values():
            worker.close()
    return merge_rounds(rounds_rows), notes


def merge_rounds(rounds_rows):
    """One row per (implementation, shape, op) from the rows of several rounds: the
    timings of the round whose median is the median of the rounds' medians (the
    lower one of the middle two for an even count), with every round's median in
    ``round_medians_ms``; a row some round did not time keeps that round's note."""
    merged = {}
    for round_rows in rounds_rows:
        for row in round_rows:
            merged.setdefault((row["impl"], row["spec"], row["op"]), []).append(row)
    rows = []
    for runs in merged.values():
        timed = sorted((run for run in runs if "median_ms" in run), key=lambda run: run["median_ms"])
        if len(timed) < len(runs) or len(runs) < len(rounds_rows):
            rows.append(next((run for run in runs if "median_ms" not in run), runs[0]))
            continue
        rows.append({**timed[(len(timed) - 1) // 2], "round_medians_ms": [run["median_ms"] for run in runs]})
    return rows


def annotate(rows, bandwidth_gb_per_s):
    """Add bytes, floor, GB/s and the ratio and checksum difference against torch to ``rows``."""
    cases = {}
    torch_rows = {(row["spec"], row["op"]): row for row in rows if row["impl"] == "torch" and "median_ms" in row}
    for row in rows:
        case = cases.setdefault(row["spec"], parse_shapes(row["spec"])[0])
        row["bytes"] = bytes_moved(case, row["op"])
        row["floor_ms"] = row["bytes"] / (bandwidth_gb_per_s * 1e9) * 1e3
        if "median_ms" not in row:
            continue
        seconds = row["median_ms"] * 1e-3
        row["gb_per_s"] = row["bytes"] / seconds / 1e9
        row["floor_percent"] = 100 * row["floor_ms"] / row["median_ms"]
        row["times_floor"] = row["median_ms"] / row["floor_ms"]
        anchor = torch_rows.get((row["spec"], row["op"]))
        if anchor is not None:
            row["ratio_vs_torch"] = row["median_ms"] / anchor["median_ms"]
            row["rel_diff_vs_torch"] = max(
                (abs(a - b) / max(abs(b), 1e-30) for a, b in zip(row["checksum"], anchor["checksum"])),
                default=None)
    return rows


if __name__ == "__main__":
    sys.exit(main())
