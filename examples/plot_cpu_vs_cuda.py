"""
Timing the sampler on the CPU and on a GPU
==========================================

How long do :func:`stn_numba.affine_grid`, :func:`stn_numba.grid_sample` and
its backward take on your machine? This script times them on NumPy arrays
(the multi-core CPU kernels) and, when a CUDA GPU is usable, on GPU arrays
(the CUDA kernels), on a few small float32 batches. Where there is no GPU, as
on the machine that built this page, it says so and times the CPU only.

The timings are taken the honest way: untimed warm-up calls first (the first
call of a kernel compiles it), then the median of repeated calls under
``time.perf_counter``, with the GPU synchronised inside each timed call,
since a CUDA launch returns before the kernel has run.
"""

import statistics
import time

import matplotlib.pyplot as plt
import matplotlib.ticker
import numba
import numpy as np

import stn_numba

# %%
# Is there a GPU?
# ---------------
# stn_numba runs an op on the GPU when its arrays are GPU arrays; that needs
# numba-cuda (``pip install stn-numba[cuda]``), a CUDA driver and a GPU.
# ``numba.cuda.is_available()`` is the check stn_numba makes itself: it
# answers False, without raising, where any of the three is missing.


def cuda_or_none():
    """The ``numba.cuda`` module when a GPU is usable, else None."""
    try:
        from numba import cuda
    except ImportError:  # numba-cuda is not installed
        return None
    return cuda if cuda.is_available() else None


cuda = cuda_or_none()
if cuda is None:
    print("No usable CUDA GPU here: timing the CPU kernels only.")
else:
    name = getattr(cuda.get_current_device(), "name", "the CUDA simulator")
    print(f"GPU: {name.decode() if isinstance(name, bytes) else name}")
print(f"CPU kernels run on {numba.get_num_threads()} threads")

# %%
# A timing loop
# -------------
# Two untimed calls, then at least 5 timed ones, more until about 0.2 s is
# spent (at most 50); ``sync`` ends each timed call (``cuda.synchronize`` on
# the GPU). Every call allocates its outputs, as a user's call does.


def median_ms(function, sync=None, warmup=2, min_repeats=5, max_repeats=50,
              budget_s=0.2):
    for _ in range(warmup):
        function()
        if sync is not None:
            sync()
    times = []
    while len(times) < min_repeats or (len(times) < max_repeats
                                       and sum(times) < budget_s):
        start = time.perf_counter()
        function()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


# %%
# The ops
# -------
# Each op is a function of no arguments over arrays made beforehand: NumPy
# arrays run on the CPU, ``cuda.to_device`` copies run on the GPU (and their
# results stay there). On the GPU, ``grid_sample_backward`` adds the input
# gradient up with atomic adds; ``deterministic=True`` sums each pixel's
# contributions in a fixed order instead, so that the result is bitwise
# reproducible, at a cost the timings show.


def make_inputs(shape, seed=0):
    """A float32 input, thetas near the identity, their grid and a grad_output."""
    rng = np.random.default_rng(seed)
    angles = rng.uniform(-0.2, 0.2, shape[0])
    scales = rng.uniform(0.9, 1.1, shape[0])
    theta = np.zeros((shape[0], 2, 3), dtype=np.float32)
    theta[:, 0, 0] = theta[:, 1, 1] = scales * np.cos(angles)
    theta[:, 0, 1], theta[:, 1, 0] = -scales * np.sin(angles), scales * np.sin(angles)
    theta[:, :, 2] = rng.uniform(-0.1, 0.1, (shape[0], 2))
    return {"input": rng.standard_normal(shape, dtype=np.float32), "theta": theta,
            "grid": stn_numba.affine_grid(theta, shape),
            "grad_output": rng.standard_normal(shape, dtype=np.float32)}


def ops(arrays, shape, gpu):
    x, theta, grid = arrays["input"], arrays["theta"], arrays["grid"]
    grad_output = arrays["grad_output"]

    def forward_backward(**options):
        def run():
            stn_numba.grid_sample(x, grid)
            return stn_numba.grid_sample_backward(grad_output, x, grid, **options)
        return run

    table = {
        "affine_grid": lambda: stn_numba.affine_grid(theta, shape),
        "grid_sample": lambda: stn_numba.grid_sample(x, grid),
        "grid_sample\n+ backward": forward_backward(),
    }
    if gpu:
        table["grid_sample\n+ backward\n(deterministic)"] = forward_backward(
            deterministic=True)
    return table


# %%
# Timing them
# -----------
# Three small batches (N, C, H, W), sampled onto a grid of the input's size:
# a few RGB images, one larger grey image, and an MNIST-sized batch.

shapes = [(8, 3, 64, 64), (1, 1, 256, 256), (64, 1, 28, 28)]
timings = {}  # (shape, backend) -> {op: ms}
for shape in shapes:
    arrays = make_inputs(shape)
    timings[shape, "CPU"] = {op: median_ms(function)
                             for op, function in ops(arrays, shape, False).items()}
    if cuda is not None:
        on_gpu = {name: cuda.to_device(array) for name, array in arrays.items()}
        timings[shape, "CUDA"] = {op: median_ms(function, sync=cuda.synchronize)
                                  for op, function in ops(on_gpu, shape, True).items()}

for (shape, backend), row in timings.items():
    label = "×".join(map(str, shape))
    medians = (f"{op.replace(chr(10), ' ')} {ms:.3g} ms" for op, ms in row.items())
    print(f"{label:>12} {backend:>4}: " + ", ".join(medians))

# %%
# The medians, one panel per batch (log scale: the ops differ by orders of
# magnitude).

backends = [backend for backend in ("CPU", "CUDA") if (shapes[0], backend) in timings]
all_ops = list(timings[shapes[0], backends[-1]])
fig, axes = plt.subplots(1, len(shapes), figsize=(4.2 * len(shapes), 3.8), sharey=True)
width = 0.8 / len(backends)
for ax, shape in zip(axes, shapes):
    for index, backend in enumerate(backends):
        row = timings[shape, backend]
        offset = (index - (len(backends) - 1) / 2) * width
        positions = [k + offset for k, op in enumerate(all_ops) if op in row]
        bars = ax.bar(positions, list(row.values()), width,
                      label=f"stn_numba {backend}")
        ax.bar_label(bars, fmt="%.2g", fontsize=7)
    ax.set_xticks(range(len(all_ops)), all_ops, fontsize=8)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2, 5)))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_title("×".join(map(str, shape)) + " float32")
low, high = axes[0].get_ylim()
if high / low > 1e3:  # many decades: label the powers of ten only
    axes[0].yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
axes[0].set_ylabel("median time per call (ms)")
fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center",
           ncol=len(backends), fontsize="small")
fig.suptitle("stn_numba, CPU and CUDA" if cuda is not None
             else "stn_numba, CPU only (no GPU on this machine)")
fig.tight_layout(rect=(0, 0.06, 1, 1))

# %%
# Going further
# -------------
# These are single runs of small batches on whatever machine runs the
# script; the CPU times on a machine shared with other work move by tens of
# percent from run to run. The benchmark suite does it carefully: each
# implementation in its own process, taking turns on every row, against
# torch, ``scipy.ndimage`` and OpenCV. From a clone of the repository:
#
# .. code-block:: bash
#
#     python -m benchmarks             # CPU: against torch, scipy, OpenCV
#     python -m benchmarks.bench_cuda  # GPU: against its CPU and torch CUDA
#
# ``bench_cuda`` says so and exits when there is no GPU. The committed results
# (``benchmarks/results/``), with their plots, are on the :doc:`performance
# page </performance>`: on an NVIDIA H200, stn_numba's CUDA kernels beat its
# own CPU kernels on the large batches but remain several times slower than
# torch's CUDA kernels, most of it numba-cuda's host-side launch costs.
