"""Dask: warp image stacks and volumes larger than one machine, with gradients.

``pip install "stn-numba[dask]"``. This module is a partitioning layer: it
plans chunks, finds the input region that each output chunk reads, builds the
task graph, and in each task calls the public functions of
:mod:`stn_numba.sampling` or the region entry points of the CPU kernels
(``region_window``, ``tap_extent``, ``sample_region``,
``sample_region_backward``). It has no kernel and no sampling math of its
own: only bounding boxes and coordinate conversions (scipy.ndimage's pixel
convention to the sampler's normalised one). ``import stn_numba`` does not
import dask; ``import stn_numba.dask`` does.

Two ways to cut the work
------------------------
Batch-chunked (the input has one chunk along each spatial axis): one task
per (batch chunk, channel chunk) calls the in-memory function on its chunk.
Results are bitwise equal to the in-memory call on the whole array.

Spatially chunked (the input is cut along a spatial axis: one huge image or
volume): each output chunk reads only the input region its sample points
need, the bounding box of their coordinates widened by the interpolation
footprint, as found by the kernels' ``tap_extent``, with border and
reflection padding taken at the true image edges (circular padding reads
the whole axis where a chunk's taps may wrap; constant padding adds its fill
from the whole input's edges, `stn_numba._cpu.padding`). For
:func:`affine_grid_sample` the box comes analytically from θ and the chunk's
corners; for :func:`grid_sample` from the minimum and maximum of each grid
chunk (computed first, eagerly: persist an expensive grid before calling).
A task takes the input chunks under its region whole, except a piece of at
most 1/16 of a chunk, which a task of its own cuts where the chunk lives
(`_CUT_SHARE`); it assembles the region in a buffer its thread reuses.
Forward values and ``grad_grid`` are bitwise equal to the in-memory call;
``grad_input`` is the sum, for each input chunk, of the contributions of the
output chunks that read it, added in a fixed order (output chunk order), and
``grad_theta`` the fixed-order sum over output chunks: deterministic, equal to
the in-memory values to rounding.

Numba threads in Dask workers
-----------------------------
Each task sets Numba's thread count (``numba.set_num_threads``, which holds
for the thread that runs the task) to its share of the cores so that Dask's
threads times Numba's threads do not oversubscribe the machine: the cores
this process may use divided by the number of Dask threads on its host (all
workers of the host together, from the scheduler when the graph is built;
this worker's own thread count if the scheduler did not know the host). With
``LocalCluster(n_workers=2, threads_per_worker=1)`` on 2 cores every task runs
one Numba thread; with one worker of one thread on 16 cores, 16. Outside
``dask.distributed``, tasks on the calling thread (the synchronous scheduler)
use every core and tasks of Dask's local thread pool ``cores // pool size``.
``dask.config.set({"stn_numba.numba_threads": k})`` when building the graph
forces ``k``. :func:`numba_threads` returns the count a task would use.

Out of core
-----------
Every function takes dask arrays (``dask.array.from_zarr`` and the like) and
also a zarr array, an h5py dataset or a NumPy memmap themselves: these are
read region by region inside the tasks that need them, so no task holds an
input chunk for another and a worker's memory stays at a few chunks
(``tests/test_dask.py`` measures it). Write the result with
``result.to_zarr(...)``: each task stores its own chunk.

CPU only: arrays whose chunks are GPU arrays are refused.
"""

import math
import operator
import os
import threading
from dataclasses import dataclass, replace
from itertools import product
from urllib.parse import urlparse

import numpy as np

try:
    import dask
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as error:  # pragma: no cover - exercised without dask only
    raise ImportError("stn_numba.dask needs dask: pip install 'stn-numba[dask]' "
                      "(dask[array,distributed] and zarr)") from error

from . import _checks, _codes, _threading
from . import sampling as _sampling
from ._arrays import is_device_array

__all__ = [
    "affine_grid_sample",
    "affine_grid_sample_backward",
    "affine_transform",
    "grid_sample",
    "grid_sample_backward",
    "numba_threads",
]

_MODE_NAMES = {code: name for name, code in _codes.MODES.items()}
_PADDING_NAMES = {code: name for name, code in _codes.PADDING_MODES.items()}


# ------------------------------------------------------------ validation
def _describe(value):
    return _checks._describe(value)


def _as_dask(value, name, chunks=None):
    """``value`` as a dask array of NumPy chunks (NumPy input is wrapped with ``chunks``)."""
    if isinstance(value, da.Array):
        meta = getattr(value, "_meta", None)
        if meta is not None and (not isinstance(meta, np.ndarray) or isinstance(meta, np.ma.MaskedArray)):
            raise TypeError(f"{name} must be a dask array of NumPy chunks (stn_numba.dask runs on the CPU), "
                            f"got chunks of type {type(meta).__module__}.{type(meta).__name__}")
        if any(math.isnan(c) for axis in value.chunks for c in axis):
            raise ValueError(f"{name} must have known chunk sizes, got unknown ones in {value.chunks}; "
                             "call .compute_chunk_sizes() first")
        return value
    if is_device_array(value):
        raise TypeError(f"{name} is a GPU array; stn_numba.dask runs on the CPU only: pass a NumPy or dask array")
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(f"{name} must be a dask or NumPy array, got {_describe(value)}")
    # np.memmap and zarr arrays stay lazy: from_array reads each chunk in its task
    return da.from_array(value, chunks="auto" if chunks is None else chunks)


def _cpu_array(value, name):
    """A small argument (theta): NumPy array, computed first if it is a dask array."""
    if isinstance(value, da.Array):
        value = _as_dask(value, name).compute()
    if is_device_array(value):
        raise TypeError(f"{name} is a GPU array; stn_numba.dask runs on the CPU only: pass a NumPy or dask array")
    return np.asarray(value)


def _spatial_chunks(value, shape, name):
    """``value`` (None, int, tuple of ints or of tuples) normalised to chunks of ``shape``."""
    try:
        chunks = da.core.normalize_chunks(value, tuple(shape))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be chunks for shape {tuple(shape)} (an int, a tuple of {len(shape)} ints "
                         f"or of {len(shape)} tuples of chunk sizes), got {value!r}: {error}") from None
    if len(chunks) != len(shape):
        raise ValueError(f"{name} must give chunks for the {len(shape)} axes of shape {tuple(shape)}, got {value!r}")
    return chunks


def _rechunk_axis(array, axis, chunks):
    if array.chunks[axis] == tuple(chunks):
        return array
    if isinstance(array, _Source):
        return array.with_chunks(axis, tuple(chunks))
    return array.rechunk({axis: tuple(chunks)})


# ------------------------------------------------------------ direct sources
class _Memmap:
    """A NumPy memmap by file name, reopened where it is read (pickling a memmap copies its data)."""

    def __init__(self, array):
        self.filename, self.offset = str(array.filename), int(array.offset)
        self.dtype, self.shape = array.dtype, tuple(array.shape)
        self.order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        mapped = np.memmap(self.filename, self.dtype, "r", self.offset, self.shape, self.order)
        return np.array(mapped[index])


def _is_source(value):
    """A lazily readable array that each task should read its own region of (zarr, h5py, memmap)."""
    if isinstance(value, np.memmap):
        return True
    if isinstance(value, (np.ndarray, da.Array)) or is_device_array(value):
        return False
    return all(hasattr(value, name) for name in ("shape", "dtype", "__getitem__")) and len(value.shape) > 0


class _Source:
    """A zarr array (or memmap, or anything sliceable with shape and dtype)
    seen as (N, C, *S) with chunks, but read region by region inside the
    tasks that need it: no task holds an input chunk for another, so a
    worker's memory stays at a few chunks."""

    def __init__(self, array, lead, chunks):
        self.array = _Memmap(array) if isinstance(array, np.memmap) else array
        self.lead = lead  # True: the array has no N, C axes (a 2-D image or 3-D volume)
        self.shape = ((1, 1) if lead else ()) + tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.chunks = chunks
        self.chunksize = tuple(max(c) if c else 0 for c in chunks)
        self.name = None

    @classmethod
    def of(cls, array, lead):
        native = getattr(array, "chunks", None)
        shape = ((1, 1) if lead else ()) + tuple(int(s) for s in array.shape)
        if isinstance(native, tuple) and len(native) == len(array.shape) and all(
                isinstance(c, (int, np.integer)) for c in native):
            native = ((1, 1) if lead else ()) + tuple(int(c) for c in native)
            if not lead:
                native = native[:1] + (shape[1],) + native[2:]
        else:
            native = "auto"
        return cls(array, lead, da.core.normalize_chunks(native, shape, dtype=np.dtype(array.dtype)))

    def __dask_tokenize__(self):
        return ("stn_numba.dask._Source", id(self.array), self.lead, self.shape, str(self.dtype), self.chunks)

    def with_chunks(self, axis, chunks):
        new = list(self.chunks)
        new[axis] = chunks
        return _Source(self.array, self.lead, tuple(new))

    def block(self, index):
        """The lazy window of chunk ``index`` (N, C, *S chunk numbers)."""
        starts = tuple(int(sum(c[:i])) for c, i in zip(self.chunks, index))
        shape = tuple(c[i] for c, i in zip(self.chunks, index))
        return _Window(self.array, self.lead, starts, shape)


class _Window:
    """A box of a source; indexing it reads only the box's part asked for."""

    def __init__(self, array, lead, starts, shape):
        self.array, self.lead, self.starts, self.shape = array, lead, starts, shape
        self.ndim = len(shape)

    def __getitem__(self, index):
        index = tuple(index) + (slice(None),) * (self.ndim - len(index))
        absolute = []
        for axis, item in enumerate(index):
            first, stop, _ = item.indices(self.shape[axis])
            absolute.append(slice(self.starts[axis] + first, self.starts[axis] + stop))
        part = np.asarray(self.array[tuple(absolute[2:]) if self.lead else tuple(absolute)])
        return part.reshape(tuple(s.stop - s.start for s in absolute))


class _Image:
    """A 2-D image or 3-D volume as a dask array, seen as (1, 1, *S): its tasks
    read the chunks under their own keys and add the two axes themselves (a
    view), with no task per chunk for that."""

    def __init__(self, array):
        self.array, self.name, self.dtype = array, array.name, array.dtype
        self.shape = (1, 1) + tuple(array.shape)
        self.chunks = ((1,), (1,)) + tuple(array.chunks)
        self.chunksize = (1, 1) + tuple(array.chunksize)
        self.ndim = len(self.shape)

    def __dask_tokenize__(self):
        return ("stn_numba.dask._Image", self.name)


# ------------------------------------------------------------ threads
@dataclass(frozen=True)
class _Threads:
    """What a task needs to pick its Numba thread count (see the module docstring)."""

    forced: object  # int or None
    host_threads: tuple  # ((host, Dask threads on it), ...) from the scheduler


def _thread_plan():
    forced = dask.config.get("stn_numba.numba_threads", None)
    if forced is not None:
        if isinstance(forced, bool) or not isinstance(forced, int) or forced < 1:
            raise ValueError(f"dask config 'stn_numba.numba_threads' must be a positive int, got {forced!r}")
    return _Threads(forced, tuple(sorted(_cluster_threads().items())))


def _cluster_threads():
    """Dask threads per host of the current ``distributed`` client, or {}."""
    try:
        from distributed import default_client

        client = default_client()
    except (ImportError, ValueError):
        return {}
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # older distributed: every worker by default
        info = client.scheduler_info()
    threads = {}
    for address, worker in info.get("workers", {}).items():
        host = worker.get("host") or urlparse(address).hostname
        threads[host] = threads.get(host, 0) + int(worker.get("nthreads", 1))
    return threads


def _usable_cores():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def numba_threads(host_threads=None):
    """The Numba thread count a task of this module uses where it is called.

    Parameters
    ----------
    host_threads : mapping of str to int, optional
        Dask threads per host name, as the scheduler reports them; by default
        those of the current ``distributed`` client, if any.

    Returns
    -------
    int
        The usable cores of this process divided by the Dask threads sharing
        its host (at least 1, at most Numba's pool size), or the value of the
        dask config key ``stn_numba.numba_threads`` when set. See the module
        docstring.
    """
    plan = _thread_plan() if host_threads is None else _Threads(
        dask.config.get("stn_numba.numba_threads", None), tuple(dict(host_threads).items()))
    return _task_threads(plan)


def _task_threads(plan):
    import numba

    if plan.forced is not None:
        count = plan.forced
    else:
        cores = _usable_cores()
        worker = None
        try:
            from distributed import get_worker

            worker = get_worker()
        except (ImportError, ValueError):
            pass
        if worker is not None:
            own = getattr(getattr(worker, "state", worker), "nthreads", None) or 1
            dask_threads = dict(plan.host_threads).get(urlparse(worker.address).hostname, own)
        elif threading.current_thread() is threading.main_thread():
            dask_threads = 1  # the synchronous scheduler runs tasks on the calling thread
        else:
            dask_threads = dask.config.get("num_workers", None) or cores  # dask's local thread pool
        count = max(1, cores // max(1, dask_threads))
    return max(1, min(count, numba.config.NUMBA_NUM_THREADS))


def _use_threads(plan):
    import numba

    count = _task_threads(plan)
    if numba.get_num_threads() != count:
        numba.set_num_threads(count)


# ------------------------------------------------------------ kernels
# A chunk's parallel kernels run through `_threading.guard`, as the public
# functions' do (under a lock on Numba's workqueue layer).
def _region_kernels():
    from ._cpu import sampling

    return sampling


def _fill_kernels():
    from ._cpu import padding

    return padding


def _grid_kernels():
    from ._cpu import grids

    return grids


# ------------------------------------------------------------ plans
@dataclass(frozen=True)
class _Op:
    """The sampler call shared by every task of a graph."""

    fused: bool
    mode: int
    padding: int
    align: bool
    in_size: tuple  # whole input, spatial, array order
    out_size: tuple  # whole output, spatial
    dtype: object
    threads: _Threads
    fill: float = 0.0  # constant padding's fill_value

    @property
    def names(self):
        return _MODE_NAMES[self.mode], _PADDING_NAMES[self.padding]


@dataclass(frozen=True)
class _Part:
    """One output chunk's input region and how to build it from input chunks."""

    low: tuple  # region origin, spatial, array order
    shape: tuple  # region size
    origins: tuple  # spatial origin of each input chunk given, in the order given
    out_origin: tuple  # the output chunk's spatial origin
    public: bool  # whole input and (fused) whole output: call the public function


@dataclass(frozen=True)
class _Mask:
    """scipy's mode="constant": points whose pixel coordinate leaves [0, size-1] read ``cval``."""

    matrix: object  # (D, D) output pixel -> input pixel, array order
    offset: object  # (D,)
    cval: float


def _starts(chunks):
    return np.concatenate([[0], np.cumsum(chunks, dtype=np.int64)])


def _overlapping(starts, low, high):
    """Chunks (by number) whose index range meets [low, high]."""
    first = int(np.searchsorted(starts, low, side="right")) - 1
    last = int(np.searchsorted(starts, high, side="right")) - 1
    return range(max(first, 0), min(last, len(starts) - 2) + 1)


def _base(i, size, align):
    """The normalised base coordinate of output pixel ``i`` (``affine_grid``'s, in float64)."""
    if size <= 1:
        return 0.0
    return (2.0 * i - (size - 1)) / ((size - 1) if align else size)


def _fused_bounds(theta, out_size, out_low, out_shape, align):
    """Per grid component (x, y[, z]): the lowest and highest normalised source
    coordinate of the output box [out_low, out_low + out_shape) over the
    images of ``theta`` (N, A, A+1), widened to cover the kernel's float32
    rounding; None where θ is not finite (then the whole axis is read)."""
    spatial = len(out_size)
    theta = np.asarray(theta, np.float64)
    if not np.all(np.isfinite(theta)):
        return None
    # bases in x, y, z order (reverse of array order)
    lows = np.array([_base(out_low[d], out_size[d], align) for d in range(spatial)][::-1])
    highs = np.array([_base(out_low[d] + out_shape[d] - 1, out_size[d], align) for d in range(spatial)][::-1])
    linear = theta[:, :, :spatial]
    a, b = linear * lows, linear * highs
    constant = theta[:, :, spatial]
    low = np.minimum(a, b).sum(axis=-1) + constant
    high = np.maximum(a, b).sum(axis=-1) + constant
    # the kernel computes in the data's dtype: float32 errors stay below ~4e-7 of sum |row|
    slack = 1e-6 * (1.0 + np.abs(theta).sum(axis=-1))
    return (low - slack).min(axis=0), (high + slack).max(axis=0)


def _grid_bounds(block):
    """Per component of a grid chunk, the lowest and highest value (NaN ignored; NaN if none)."""
    spatial = block.shape[-1]
    values = np.asarray(block).reshape(-1, spatial)
    out = np.full((spatial, 2), np.nan)
    for axis in range(spatial):
        column = values[:, axis]
        column = column[~np.isnan(column)]
        if column.size:
            out[axis] = column.min(), column.max()
    return out.reshape((1,) * (block.ndim - 1) + (spatial, 2))


def _tap_region(op, low, high):
    """The input index range (array order, inclusive) that every sample point
    with normalised coordinates in [low, high] (per component x, y[, z]) reads,
    from the kernels' `tap_extent` on a few points that bound it: the two ends
    and, for reflection, the mirror edges (odd normalised values) in between."""
    spatial = len(op.in_size)
    if low is None:
        return tuple((0, size - 1) for size in op.in_size)
    columns = []
    for axis in range(spatial):
        lo, hi = float(low[axis]), float(high[axis])
        if math.isnan(lo) or math.isnan(hi):
            columns.append([0.0])  # every point is NaN there: it reads nothing
            continue
        values = [lo, hi]
        if op.padding == _codes.REFLECTION:
            if math.isinf(lo) or math.isinf(hi) or hi - lo >= 4.0:
                values += [-1.0, 1.0]  # two or more mirror edges: the whole axis
            else:
                edges = [2.0 * k + 1.0 for k in range(math.ceil((lo - 1.0) / 2.0), math.floor((hi - 1.0) / 2.0) + 1)]
                values += edges if len(edges) < 2 else [-1.0, 1.0]
        columns.append(values)
    count = max(len(column) for column in columns)
    points = np.empty((1,) * (spatial - 1) + (1, count, spatial), op.dtype)
    for axis, column in enumerate(columns):
        for k in range(count):
            points.reshape(count, spatial)[k, axis] = column[min(k, len(column) - 1)]
    kernels = _region_kernels()
    window = kernels.region_window(op.in_size, (0,) * spatial)
    padding = _codes.sampled_padding(op.padding)
    extent = kernels.tap_extent(points, (1, 1) + points.shape[1:-1], window, False, op.mode, padding, op.align)
    region = []
    for axis in range(spatial):
        first, last = int(extent[axis, 0]), int(extent[axis, 1])
        if last < first:
            first = last = 0
        component = spatial - 1 - axis  # (x, y[, z] order)
        if op.padding == _codes.CIRCULAR and _may_wrap(op, low[component], high[component], op.in_size[axis]):
            first, last = 0, op.in_size[axis] - 1
        region.append((max(first, 0), min(last, op.in_size[axis] - 1)))
    return tuple(region)


def _may_wrap(op, low, high, size):
    """Whether circular padding may wrap a tap of a point with normalised
    coordinates in [low, high] along an axis of ``size`` pixels (then the
    chunk reads the whole axis): the taps of the ends bound the others only
    while none leaves [0, size - 1] (two pixels of slack, for bicubic)."""
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return True
    def pixel(g):
        return (g + 1.0) * (size - 1) / 2.0 if op.align else ((g + 1.0) * size - 1.0) / 2.0
    return pixel(low) - 2.0 < 0.0 or pixel(high) + 3.0 > size - 1


def _plan_part(op, in_starts, region, out_origin, out_shape):
    """A `_Part` and the input chunk numbers (per spatial axis) it needs."""
    blocks = [_overlapping(starts, low, high) for starts, (low, high) in zip(in_starts, region)]
    origins = tuple(tuple(int(in_starts[axis][k]) for axis, k in enumerate(index)) for index in product(*blocks))
    low = tuple(r[0] for r in region)
    shape = tuple(r[1] - r[0] + 1 for r in region)
    whole = low == (0,) * len(low) and shape == tuple(op.in_size)
    public = whole and (not op.fused or (tuple(out_shape) == tuple(op.out_size)))
    return _Part(low, shape, origins, tuple(out_origin), public), list(product(*blocks))


# ------------------------------------------------------------ task bodies
_scratch = threading.local()


def _scratch_region(shape, dtype):
    """An uninitialised array for a task's input region, in a buffer this thread reuses.

    A region lives only while its task runs. A fresh array of that size
    would be paged in anew by every task: Dask's nanny starts workers with
    ``MALLOC_TRIM_THRESHOLD_`` set, so glibc maps and unmaps each large
    block. The buffer keeps the largest region this thread has assembled."""
    words = -(-math.prod(shape) * dtype.itemsize // 8)
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or buffer.size < words:
        buffer = _scratch.buffer = np.empty(words, np.float64)
    return buffer[:words].view(np.uint8)[:math.prod(shape) * dtype.itemsize].view(dtype).reshape(shape)


def _assemble(blocks, part, dtype):
    """The input region of ``part`` (N, C, *shape), C-contiguous ``dtype``, from its input chunks
    (in this thread's scratch buffer when it is made of pieces: valid until the thread's next task)."""
    blocks = [block[None, None] if block.ndim == len(part.shape) else block for block in blocks]  # (`_Image`)
    if len(blocks) == 1 and part.origins[0] == part.low and tuple(blocks[0].shape[2:]) == part.shape:
        block = blocks[0]
        return np.require(block[(slice(None),) * block.ndim] if isinstance(block, _Window) else block, dtype,
                          ["C", "A", "W"])
    lead = tuple(blocks[0].shape[:2])
    region = _scratch_region(lead + part.shape, np.dtype(dtype))
    for block, origin in zip(blocks, part.origins):
        source, target = [slice(None)] * 2, [slice(None)] * 2
        for axis, (start, low, size) in enumerate(zip(origin, part.low, part.shape)):
            first = max(start, low)
            stop = min(start + block.shape[2 + axis], low + size)
            source.append(slice(first - start, stop - start))
            target.append(slice(first - low, stop - low))
        region[tuple(target)] = block[tuple(source)]  # a window reads only this part
    return region


def _window(op, part):
    return _region_kernels().region_window(op.in_size, part.low, op.out_size, part.out_origin)


def _region_points(op, part, points, out_shape):
    """(points, fused) for the region kernels: the grid chunk, or θ; with
    constant padding the chunk's affine grid instead of θ, as the fill reads
    its points (bitwise `affine_grid`'s values there, as the in-memory call
    takes them)."""
    points = np.require(points, op.dtype, ["C", "A", "W"])
    if not (op.fused and op.padding == _codes.CONSTANT):
        return points, op.fused
    grid = np.empty((points.shape[0],) + tuple(out_shape) + (len(out_shape),), op.dtype)
    _grid_kernels().affine_grid_part(points, grid, op.out_size, part.out_origin, op.align)
    return grid, False


def _forward_task(op, part, blocks, points, out_shape, mask):
    _use_threads(op.threads)
    source = _assemble(blocks, part, op.dtype)
    mode, padding = op.names
    if part.public:
        if op.fused:
            output = _sampling.affine_grid_sample(source, points, source.shape[:2] + tuple(op.out_size), mode,
                                                  padding, op.align, fill_value=op.fill)
        else:
            output = _sampling.grid_sample(source, points, mode, padding, op.align, fill_value=op.fill)
    else:
        points, fused = _region_points(op, part, points, out_shape)
        output = np.empty(source.shape[:2] + tuple(out_shape), op.dtype)
        if output.size:
            sample_region = _threading.guard(_region_kernels().sample_region)
            sample_region(source, points, output, _window(op, part), fused, op.mode,
                          _codes.sampled_padding(op.padding), op.align)
            if op.padding == _codes.CONSTANT:
                fill_outside = _threading.guard(_fill_kernels().fill_outside)
                fill_outside(points, output, _codes.fill_sizes(op.in_size), op.dtype.type(op.fill), op.mode, op.align)
    if mask is not None:
        _apply_mask(output, mask, part.out_origin, op.in_size)
    return output


def _apply_mask(output, mask, origin, in_size):
    """scipy's "constant": ``cval`` where an output pixel's source pixel is
    outside [0, size-1]: the columns outside each output line's run of inside
    points (the kernels' ``inside_runs``) are written."""
    shape = output.shape[2:]
    count = math.prod(shape[:-1])
    first = np.empty(count, np.int64)
    stop = np.empty(count, np.int64)
    kernels = _region_kernels()
    kernels.inside_runs(np.asarray(mask.matrix, np.float64), np.asarray(mask.offset, np.float64),
                        np.asarray(origin, np.int64), np.asarray(shape, np.int64), np.asarray(in_size, np.int64),
                        first, stop)
    # (a view: the task's output is C-contiguous, made by the sampler or np.empty)
    kernels.fill_outside_runs(output.reshape(-1, count, shape[-1]), first, stop, output.dtype.type(mask.cval))


def _apply_mask_per_point(output, mask, origin, in_size):
    """`_apply_mask` point by point (the reference of tests/test_dask.py)."""
    shape = output.shape[2:]
    outside = np.zeros(shape, bool)
    grids = np.meshgrid(*[np.arange(o, o + s, dtype=np.float64) for o, s in zip(origin, shape)], indexing="ij")
    for i, size in enumerate(in_size):
        base = np.full(shape[:-1], mask.offset[i], np.float64)
        for j in range(len(shape) - 1):
            base = base + mask.matrix[i, j] * grids[j][..., 0]
        coordinate = base[..., None] + mask.matrix[i, -1] * grids[-1]
        outside |= (coordinate < 0) | (coordinate > size - 1)
    np.copyto(output, output.dtype.type(mask.cval), where=outside)


def _fill_task(shape, value, dtype):
    return np.full(shape, value, dtype)


def _backward_task(op, part, grad_output, blocks, points, input_requires_grad):
    """(grad of the input region or None, grad of the points) of one output chunk."""
    _use_threads(op.threads)
    source = _assemble(blocks, part, op.dtype)
    mode, padding = op.names
    if part.public:
        if op.fused:
            return _sampling.affine_grid_sample_backward(
                grad_output, source, points, tuple(grad_output.shape), mode, padding, op.align,
                fill_value=op.fill, input_requires_grad=input_requires_grad)
        return _sampling.grid_sample_backward(grad_output, source, points, mode, padding, op.align,
                                              fill_value=op.fill, input_requires_grad=input_requires_grad)
    grad_output = np.require(grad_output, op.dtype, ["C", "A", "W"])
    theta = points
    points, fused = _region_points(op, part, points, grad_output.shape[2:])
    shape = source.shape if input_requires_grad else (0,) * source.ndim
    if not grad_output.size:
        return (np.zeros(shape, op.dtype) if input_requires_grad else None), np.zeros(np.shape(theta), op.dtype)
    grad_input = np.empty(shape, op.dtype)
    grad_points = np.empty(points.shape, op.dtype)
    sample_region_backward = _threading.guard(_region_kernels().sample_region_backward)
    sample_region_backward(grad_output, source, points, grad_input, grad_points, _window(op, part), fused, op.mode,
                           _codes.sampled_padding(op.padding), op.align, bool(input_requires_grad))
    if op.padding == _codes.CONSTANT:
        fill_outside_backward = _threading.guard(_fill_kernels().fill_outside_backward)
        fill_outside_backward(grad_output, points, grad_points, _codes.fill_sizes(op.in_size), op.dtype.type(op.fill),
                              op.mode, op.align)
        if op.fused:  # the chunk's grid gradient, through its affine grid
            grad_points = _part_theta_gradient(op, part, grad_points)
    return (grad_input if input_requires_grad else None), grad_points


def _part_theta_gradient(op, part, grad_grid):
    """θ's gradient from an output chunk's grid gradient (N, *box, A):
    Σ_p grad_grid[p, a] · (x_p, y_p[, z_p], 1), in float64, over the chunk's
    base coordinates (the dtype's, as `affine_grid`'s backward takes them)."""
    spatial = grad_grid.shape[-1]
    bases = [_grid_kernels()._base_coordinates(size, op.align, grad_grid)[first:first + length].astype(np.float64)
             for size, first, length in zip(op.out_size, part.out_origin, grad_grid.shape[1:-1])]
    planes = list(np.meshgrid(*bases, indexing="ij"))[::-1] + [np.ones(grad_grid.shape[1:-1])]  # x, y[, z], 1
    flat = grad_grid.reshape(grad_grid.shape[0], -1, spatial).astype(np.float64)
    grad_theta = np.einsum("npa,kp->nak", flat, np.stack([plane.reshape(-1) for plane in planes]))
    return grad_theta.astype(op.dtype)


def _second(pair):
    return pair[1]


def _sum_grad_input(shape, origin, parts, lows, dtype):
    """One input chunk's gradient: the overlapping parts of the output chunks'
    region gradients, added in the order given (output chunk order)."""
    if len(parts) == 1 and lows[0] == origin and tuple(parts[0][0].shape) == tuple(shape):
        return parts[0][0]
    total = np.zeros(shape, dtype)
    for (grad, _), low in zip(parts, lows):
        source, target = [slice(None)] * 2, [slice(None)] * 2
        for axis, (start, first_low) in enumerate(zip(origin, low)):
            first = max(start, first_low)
            stop = min(start + shape[2 + axis], first_low + grad.shape[2 + axis])
            if stop <= first:
                break
            source.append(slice(first - first_low, stop - first_low))
            target.append(slice(first - start, stop - start))
        else:
            total[tuple(target)] += grad[tuple(source)]
    return total


def _sum_grad_theta(parts, dtype):
    """θ's gradient of a batch chunk: the output chunks' contributions added in order, in float64."""
    if len(parts) == 1:
        return parts[0][1]
    total = np.zeros(parts[0][1].shape, np.float64)
    for _, grad in parts:
        total += grad
    return total.astype(dtype)


# ------------------------------------------------------------ graph building
def _spatially_whole(array, axes):
    return all(len(array.chunks[axis]) == 1 for axis in axes)


def _merged_batch_chunks(chunks):
    """Batch chunks of at least ``min(4, N)`` images, so that each chunk's
    backward sums in the same order as the whole batch's (the CPU backward cuts
    an image into pieces when a call has fewer than 4 images)."""
    need = min(_region_kernels().PARALLEL_CHUNKS, sum(chunks))
    merged, current = [], 0
    for size in chunks:
        current += size
        if current >= need:
            merged.append(current)
            current = 0
    if current:
        if merged:
            merged[-1] += current
        else:
            merged.append(current)
    return tuple(merged)


class _Plan:
    """Regions of every output chunk of one sampler call on dask arrays.

    ``x`` is the input (N, C, *S); the output chunks are (batch chunk of x,
    *out_chunks). Grid path: ``grid`` (dask, batch chunks of x, spatial
    chunks ``out_chunks``). Fused: ``theta`` (NumPy).
    """

    def __init__(self, op, x, out_chunks, grid=None, theta=None):
        self.op, self.x, self.out_chunks, self.grid, self.theta = op, x, out_chunks, grid, theta
        spatial = len(op.in_size)
        self.in_starts = [_starts(c) for c in x.chunks[2:]]
        self.out_starts = [_starts(c) for c in out_chunks]
        self.batch_starts = _starts(x.chunks[0])
        whole_input = _spatially_whole(x, range(2, 2 + spatial))
        bounds = None
        if not whole_input and grid is not None:
            bounds = grid.map_blocks(
                _grid_bounds, dtype=np.float64, new_axis=grid.ndim,
                chunks=tuple((1,) * len(c) for c in grid.chunks[:-1]) + ((spatial,), (2,))).compute()
        self.parts = {}
        for ib in range(len(x.chunks[0])):
            for jo in product(*(range(len(c)) for c in out_chunks)):
                origin = tuple(int(self.out_starts[d][j]) for d, j in enumerate(jo))
                shape = tuple(int(out_chunks[d][j]) for d, j in enumerate(jo))
                if whole_input:
                    region = tuple((0, size - 1) for size in op.in_size)
                elif grid is not None:
                    block = bounds[(ib,) + jo]
                    region = _tap_region(op, block[:, 0], block[:, 1])
                else:
                    items = theta[self.batch_starts[ib]:self.batch_starts[ib + 1]]
                    limits = _fused_bounds(items, op.out_size, origin, shape, op.align)
                    region = _tap_region(op, *(limits if limits is not None else (None, None)))
                self.parts[(ib,) + jo] = _plan_part(op, self.in_starts, region, origin, shape), shape

    def points(self, ib, jo):
        """The grid chunk's key, or θ of the batch chunk."""
        if self.grid is not None:
            return (self.grid.name, ib) + jo + (0,)
        return self.theta[self.batch_starts[ib]:self.batch_starts[ib + 1]]


def _forward(op, x, out_chunks, grid=None, theta=None, masks=None, squeeze=False, name="stn-sample"):
    """The output dask array (N, C, *So), or (*So) when ``squeeze`` (N = C = 1)."""
    plan = _Plan(op, x, out_chunks, grid, theta)
    token = tokenize(op, x, grid, theta, out_chunks, masks, squeeze)
    out_name = f"{name}-{token}"
    layer = {}
    for (key, ((part, blocks), shape)) in plan.parts.items():
        ib, jo = key[0], key[1:]
        mask = masks.get(jo) if masks is not None else None
        for ic in range(len(x.chunks[1])):
            out_key = (out_name,) + jo if squeeze else (out_name, ib, ic) + jo
            lead = (x.chunks[0][ib], x.chunks[1][ic])
            if isinstance(mask, float):  # the whole chunk reads cval
                layer[out_key] = (_squeezed if squeeze else _identity,
                                  (_fill_task, lead + shape, mask, op.dtype))
                continue
            inputs, piece_part = _pieces(x, (ib, ic), part, blocks, layer, f"{out_name}-cut", (ib, ic) + jo)
            task = (_forward_task, op, piece_part, inputs, plan.points(ib, jo), shape, mask)
            layer[out_key] = (_squeezed, task) if squeeze else task
    dependencies = [a for a in (x.array if isinstance(x, _Image) else x, grid) if isinstance(a, da.Array)]
    graph = HighLevelGraph.from_collections(out_name, layer, dependencies=dependencies)
    chunks = tuple(out_chunks) if squeeze else (x.chunks[0], x.chunks[1]) + tuple(out_chunks)
    return da.Array(graph, out_name, chunks, meta=np.empty((0,) * len(chunks), op.dtype))


# A region's piece of an input chunk that is at most this share of the chunk
# (a halo, say) is cut from it in a task of its own, run where the chunk
# lives, so that only the piece moves between workers. A larger piece takes
# the whole chunk: a worker fetches a chunk once for all its tasks that read
# it, while each cut is a task, a copy and a transfer of its own (the 8192²
# rotation of benchmarks/bench_dask.py: 0.46 s with every piece cut, 0.33 s
# with whole chunks).
_CUT_SHARE = 1 / 16


def _pieces(x, lead, part, blocks, layer, cut_name, where):
    """What a task gets for its input region: per input chunk, the chunk's key,
    or the key of a cut of just the overlap when that is a small piece of the
    chunk (see `_CUT_SHARE`), or a source's lazy window; and ``part`` with the
    pieces' origins."""
    if isinstance(x, _Source):
        return [x.block(lead + index) for index in blocks], part
    inputs, origins = [], []
    lead_key = () if isinstance(x, _Image) else lead
    for index, origin in zip(blocks, part.origins):
        key = (x.name,) + lead_key + tuple(index)
        extents = [x.chunks[len(lead) + axis][k] for axis, k in enumerate(index)]
        cut = [(max(low - first, 0), min(low + size - first, extent))
               for first, low, size, extent in zip(origin, part.low, part.shape, extents)]
        if math.prod(b - a for a, b in cut) > _CUT_SHARE * math.prod(extents):
            inputs.append(key)
            origins.append(tuple(origin))
        else:
            cut_key = (cut_name,) + where + tuple(index)
            layer[cut_key] = (operator.getitem, key,
                              (slice(None),) * len(lead_key) + tuple(slice(a, b) for a, b in cut))
            inputs.append(cut_key)
            origins.append(tuple(first + a for first, (a, _) in zip(origin, cut)))
    return inputs, replace(part, origins=tuple(origins))


def _identity(value):
    return value


def _squeezed(value):
    return value[0, 0]


def _on_top(graph, below, name, layer):
    """``graph`` with ``layer`` added, which depends on its layer ``below``."""
    layers = dict(graph.layers)
    dependencies = dict(graph.dependencies)
    layers[name] = layer
    dependencies[name] = {below}
    return HighLevelGraph(layers, dependencies)


def _backward(op, grad_output, x, out_chunks, input_requires_grad, grid=None, theta=None, name="stn-backward"):
    """(grad_input or None, grad of the points) as dask arrays; channels of x and grad_output in one chunk."""
    plan = _Plan(op, x, out_chunks, grid, theta)
    token = tokenize(op, grad_output, x, grid, theta, out_chunks, input_requires_grad)
    part_name = f"{name}-parts-{token}"
    layer = {}
    for (key, ((part, blocks), _)) in plan.parts.items():
        ib, jo = key[0], key[1:]
        inputs, piece_part = _pieces(x, (ib, 0), part, blocks, layer, f"{part_name}-cut", key)
        layer[(part_name,) + key] = (_backward_task, op, piece_part, (grad_output.name, ib, 0) + jo, inputs,
                                     plan.points(ib, jo), input_requires_grad)
    dependencies = [a for a in (x, grad_output, grid) if isinstance(a, da.Array)]
    parts_graph = HighLevelGraph.from_collections(part_name, layer, dependencies=dependencies)
    spatial = len(op.in_size)

    grad_input = None
    if input_requires_grad:
        gi_name = f"{name}-grad-input-{token}"
        gi_layer = {}
        readers = {}  # input chunk -> the output chunks that read it, in output chunk order
        for key, ((_, blocks), _) in plan.parts.items():
            for index in blocks:
                readers.setdefault((key[0],) + tuple(index), []).append(key)
        for ib in range(len(x.chunks[0])):
            for k in product(*(range(len(c)) for c in x.chunks[2:])):
                origin = tuple(int(plan.in_starts[d][j]) for d, j in enumerate(k))
                shape = (x.chunks[0][ib], x.chunks[1][0]) + tuple(x.chunks[2 + d][j] for d, j in enumerate(k))
                users = readers.get((ib,) + tuple(k), [])
                lows = [plan.parts[key][0][0].low for key in users]
                gi_layer[(gi_name, ib, 0) + k] = (_sum_grad_input, shape, origin,
                                                  [(part_name,) + key for key in users], lows, op.dtype)
        graph = _on_top(parts_graph, part_name, gi_name, gi_layer)
        grad_input = da.Array(graph, gi_name, x.chunks, meta=np.empty((0,) * x.ndim, op.dtype))

    gp_name = f"{name}-grad-points-{token}"
    gp_layer = {}
    if grid is not None:
        for key in plan.parts:
            gp_layer[(gp_name,) + key + (0,)] = (_second, (part_name,) + key)
        chunks = grid.chunks
    else:
        for ib in range(len(x.chunks[0])):
            gp_layer[(gp_name, ib, 0, 0)] = (_sum_grad_theta, [(part_name,) + key for key in plan.parts
                                                                if key[0] == ib], op.dtype)
        chunks = (x.chunks[0], (spatial,), (spatial + 1,))
    graph = _on_top(parts_graph, part_name, gp_name, gp_layer)
    grad_points = da.Array(graph, gp_name, chunks, meta=np.empty((0,) * len(chunks), op.dtype))
    return grad_input, grad_points


# ------------------------------------------------------------ grid_sample
def _input(value, name="input", lead=False):
    """The sampler's input as a dask array or, for a zarr array or memmap, a `_Source`
    read region by region; a NumPy input is cut along the batch axis only."""
    if isinstance(value, (da.Array, _Source)):
        return _as_dask(value, name) if isinstance(value, da.Array) else value
    if _is_source(value):
        return _Source.of(value, lead)
    value = _cpu_array(value, name)
    return _as_dask(value, name, chunks=("auto",) + (-1,) * (value.ndim - 1) if value.ndim else "auto")


def _like(value, name, chunks):
    """A dask argument as is, or a NumPy one wrapped with ``chunks`` (its shape already checked)."""
    if isinstance(value, da.Array):
        return _as_dask(value, name)
    return da.from_array(value, chunks=chunks)


def _prepare_grid(input, grid, mode, padding_mode, align_corners, fill_value):
    x = _input(input)
    if not isinstance(grid, da.Array):
        grid = _cpu_array(grid, "grid")
    dtype, mode_code, padding_code, align = _checks.grid_sample_args(x, grid, mode, padding_mode, align_corners)
    fill = _checks.fill_value(fill_value, padding_code)
    spatial = x.ndim - 2
    g = _like(grid, "grid", (x.chunks[0],) + tuple(min(max(1, s), c) for s, c in
                                                   zip(grid.shape[1:-1], x.chunksize[2:])) + (spatial,))
    g = _rechunk_axis(_rechunk_axis(g, 0, x.chunks[0]), g.ndim - 1, (spatial,))
    return x, g, _Op(False, mode_code, padding_code, align, tuple(x.shape[2:]), tuple(g.shape[1:-1]),
                     np.dtype(dtype), _thread_plan(), fill)


def grid_sample(input, grid, mode="bilinear", padding_mode="zeros", align_corners=False, *, fill_value=0.0):
    """:func:`stn_numba.grid_sample` on dask arrays.

    Parameters
    ----------
    input : dask.array.Array, ndarray, zarr array or memmap, float32 or float64
        Images (N, C, H, W) or volumes (N, C, D, H, W). Chunked along N and C
        only (one chunk per spatial axis): one task per chunk. Chunked along a
        spatial axis: each output chunk reads only the input region its grid
        chunk needs (see the module docstring). A NumPy array is cut along N;
        a zarr array or memmap keeps its chunks and is read by region.
    grid : dask.array.Array or ndarray, same dtype
        (N, H_out, W_out, 2) or (N, D_out, H_out, W_out, 3). Its spatial chunks
        are the output's; its batch axis is rechunked to the input's. A NumPy
        grid is cut like the input's spatial chunks. With a spatially chunked
        input, the minimum and maximum of each grid chunk are computed first
        (eagerly).
    mode, padding_mode, align_corners, fill_value
        As in :func:`stn_numba.grid_sample`.

    Returns
    -------
    dask.array.Array
        ``(N, C, *grid spatial shape)``, chunks (input's batch and channel chunks,
        grid's spatial chunks); bitwise equal to the in-memory call.
    """
    x, g, op = _prepare_grid(input, grid, mode, padding_mode, align_corners, fill_value)
    return _forward(op, x, g.chunks[1:-1], grid=g, name="stn-grid-sample")


def grid_sample_backward(grad_output, input, grid, mode="bilinear", padding_mode="zeros", align_corners=False, *,
                         fill_value=0.0, input_requires_grad=True):
    """:func:`stn_numba.grid_sample_backward` on dask arrays.

    Parameters
    ----------
    grad_output : dask.array.Array or ndarray
        Gradient of the output of :func:`grid_sample`, ``(N, C, *grid spatial)``.
        It is rechunked to the output's chunks.
    input, grid, mode, padding_mode, align_corners, fill_value
        As given to :func:`grid_sample`.
    input_requires_grad : bool, optional
        If False, ``grad_input`` is not computed and None is returned.

    Returns
    -------
    grad_input : dask.array.Array or None
        Chunked like ``input``.
    grad_grid : dask.array.Array
        Chunked like ``grid`` (after its batch axis follows the input's).

    Notes
    -----
    The channel axis is computed in one chunk (``grad_grid`` sums over every
    channel in the kernel's order). With a spatially whole input, batch
    chunks are merged to hold at least ``min(4, N)`` images, so both
    gradients are bitwise equal to the in-memory call. With a spatially
    chunked input, ``grad_grid`` is bitwise equal and ``grad_input`` is summed
    per input chunk over the output chunks that read it, in output chunk
    order: deterministic, equal to rounding.
    """
    input_requires_grad = _flag(input_requires_grad, "input_requires_grad")
    x, g, op = _prepare_grid(input, grid, mode, padding_mode, align_corners, fill_value)
    original = x.chunks
    x, g = _backward_chunks(x, g)
    if not isinstance(grad_output, da.Array):
        grad_output = _cpu_array(grad_output, "grad_output")
    _checks.grad_output_for(grad_output, x, g)
    _checks.same_dtype(grad_output=grad_output, input=x)
    go = _like(grad_output, "grad_output", x.chunks[:2] + g.chunks[1:-1]).rechunk(x.chunks[:2] + g.chunks[1:-1])
    grad_input, grad_grid = _backward(op, go, x, g.chunks[1:-1], input_requires_grad, grid=g,
                                      name="stn-grid-sample-backward")
    if grad_input is not None and grad_input.chunks != original:
        grad_input = grad_input.rechunk(original)
    return grad_input, grad_grid


def _flag(value, name):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {_describe(value)}")


def _backward_chunks(x, g=None):
    """One channel chunk; batch chunks merged (spatially whole input), so the gradients are bitwise the
    in-memory ones."""
    x = _rechunk_axis(x, 1, (x.shape[1],))
    if _spatially_whole(x, range(2, x.ndim)) and x.shape[0]:
        x = _rechunk_axis(x, 0, _merged_batch_chunks(x.chunks[0]))
    if g is not None:
        g = _rechunk_axis(g, 0, x.chunks[0])
    return x, g


# ------------------------------------------------------------ fused affine warp
def _prepare_affine(input, theta, size, mode, padding_mode, align_corners, output_chunks, fill_value):
    x = _input(input)
    theta = _cpu_array(theta, "theta")
    dims, dtype, mode_code, padding_code, align = _checks.affine_grid_sample_args(
        x, theta, size, mode, padding_mode, align_corners)
    fill = _checks.fill_value(fill_value, padding_code)
    spatial = x.ndim - 2
    out_size = tuple(dims[2:])
    if output_chunks is None:
        if _spatially_whole(x, range(2, x.ndim)):
            output_chunks = out_size
        else:
            output_chunks = tuple(min(max(1, s), c) for s, c in zip(out_size, x.chunksize[2:]))
    out_chunks = _spatial_chunks(output_chunks, out_size, "output_chunks")
    if len(out_chunks) != spatial:
        raise ValueError(f"output_chunks must give chunks for the {spatial} output spatial axes, got {output_chunks!r}")
    theta = np.ascontiguousarray(theta, dtype)
    op = _Op(True, mode_code, padding_code, align, tuple(x.shape[2:]), out_size, np.dtype(dtype), _thread_plan(),
             fill)
    return x, theta, op, out_chunks


def affine_grid_sample(input, theta, size, mode="bilinear", padding_mode="zeros", align_corners=False, *,
                       fill_value=0.0, output_chunks=None):
    """:func:`stn_numba.affine_grid_sample` on dask arrays.

    Parameters
    ----------
    input : dask.array.Array, ndarray, zarr array or memmap, float32 or float64
        Images (N, C, H, W) or volumes (N, C, D, H, W), chunked along any axes
        (as :func:`grid_sample`'s ``input``).
    theta : array_like, same dtype
        (N, 2, 3) or (N, 3, 4); a dask array is computed first (it is small).
    size : sequence of int
        Output size ``(N, C, *output spatial)``, as in the in-memory function.
    mode, padding_mode, align_corners, fill_value
        As in :func:`stn_numba.affine_grid_sample`.
    output_chunks : int or tuple, optional
        Chunks of the output's spatial axes (an int, a chunk shape, or explicit
        chunk sizes per axis). Default: one chunk when the input is spatially
        whole (the batch-chunked warp), else the input's spatial chunk shape.

    Returns
    -------
    dask.array.Array
        Shape ``size``, chunks (input's batch and channel chunks,
        ``output_chunks``). Each output chunk reads only the input region
        that its points need (bounding box from θ and the chunk's corners);
        bitwise equal to the in-memory call.
    """
    x, theta, op, out_chunks = _prepare_affine(input, theta, size, mode, padding_mode, align_corners, output_chunks,
                                               fill_value)
    return _forward(op, x, out_chunks, theta=theta, name="stn-affine-grid-sample")


def affine_grid_sample_backward(grad_output, input, theta, size, mode="bilinear", padding_mode="zeros",
                                align_corners=False, *, fill_value=0.0, input_requires_grad=True):
    """:func:`stn_numba.affine_grid_sample_backward` on dask arrays.

    Parameters
    ----------
    grad_output : dask.array.Array or ndarray
        Gradient of the output, shape ``size``; its spatial chunks are the
        output chunks of the backward.
    input, theta, size, mode, padding_mode, align_corners, fill_value
        As given to :func:`affine_grid_sample`.
    input_requires_grad : bool, optional
        If False, ``grad_input`` is not computed and None is returned.

    Returns
    -------
    grad_input : dask.array.Array or None
        Chunked like ``input``.
    grad_theta : dask.array.Array
        (N, A, A+1), chunked along N like the backward's batch chunks.

    Notes
    -----
    Channels in one chunk; with a spatially whole input and a spatially
    whole ``grad_output``, batch chunks of at least ``min(4, N)`` images and
    both gradients bitwise equal to the in-memory call. Otherwise
    ``grad_input`` is summed per input chunk and ``grad_theta`` over output
    chunks in a fixed order (float64): deterministic, equal to rounding.
    """
    input_requires_grad = _flag(input_requires_grad, "input_requires_grad")
    x = _input(input)
    original = x.chunks
    x, theta, op, _ = _prepare_affine(x, theta, size, mode, padding_mode, align_corners, None, fill_value)
    x, _ = _backward_chunks(x)
    if not isinstance(grad_output, da.Array):
        grad_output = _cpu_array(grad_output, "grad_output")
    _checks.shape_for(grad_output, "grad_output", (x.shape[0], x.shape[1]) + op.out_size,
                      "the output of affine_grid_sample")
    _checks.same_dtype(grad_output=grad_output, input=x)
    go = _like(grad_output, "grad_output", x.chunks[:2] + tuple((s,) for s in op.out_size))
    out_chunks = go.chunks[2:]
    go = go.rechunk(x.chunks[:2] + out_chunks)
    grad_input, grad_theta = _backward(op, go, x, out_chunks, input_requires_grad, theta=theta,
                                       name="stn-affine-grid-sample-backward")
    if grad_input is not None and grad_input.chunks != original:
        grad_input = grad_input.rechunk(original)
    return grad_input, grad_theta


# ------------------------------------------------------------ dask-image drop-in
# scipy mode -> (padding_mode, align_corners, "constant" mask)
_SCIPY_MODES = {
    "constant": ("zeros", False, True),
    "grid-constant": ("constant", False, False),
    "grid-wrap": ("circular", False, False),
    "nearest": ("border", False, False),
    "reflect": ("reflection", False, False),
    "grid-mirror": ("reflection", False, False),  # scipy's alias of "reflect"
    "mirror": ("reflection", True, False),
}


def _scipy_matrix(matrix, offset, ndim):
    """(matrix (D, D), offset (D,)) in float64 from scipy.ndimage's accepted forms."""
    try:
        array = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"matrix must be a numeric array, got {_describe(matrix)}") from None
    forms = f"({ndim},), ({ndim}, {ndim}), ({ndim}, {ndim + 1}) or ({ndim + 1}, {ndim + 1})"
    if array.ndim == 1 and array.shape == (ndim,):
        linear, homogeneous = np.diag(array), False
    elif array.ndim == 2 and array.shape == (ndim, ndim):
        linear, homogeneous = array, False
    elif array.ndim == 2 and array.shape in ((ndim, ndim + 1), (ndim + 1, ndim + 1)):
        if array.shape[0] == ndim + 1 and not np.array_equal(array[ndim], [0.0] * ndim + [1.0]):
            raise ValueError(f"matrix of shape {array.shape} must be homogeneous, its bottom row "
                             f"{[0] * ndim + [1]}, got {array[ndim].tolist()}")
        linear, homogeneous = array[:ndim, :ndim], True
    else:
        raise ValueError(f"matrix must have shape {forms} for a {ndim}-D image, got shape {array.shape}")
    if homogeneous:
        shift = array[:ndim, ndim]
    else:
        try:
            shift = np.asarray(offset, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"offset must be a float or a sequence of {ndim} floats, got {_describe(offset)}") \
                from None
        if shift.ndim == 0:
            shift = np.full(ndim, float(shift))
        shift = shift.squeeze() if shift.size == ndim else shift
        if shift.shape != (ndim,):
            raise ValueError(f"offset must be a float or a sequence of {ndim} floats, got shape {shift.shape}")
    if not (np.all(np.isfinite(linear)) and np.all(np.isfinite(shift))):
        raise ValueError("matrix and offset must be finite, got NaN or Inf")
    return np.ascontiguousarray(linear), np.ascontiguousarray(shift.reshape(ndim))


def _pixel_theta(matrix, offset, in_size, out_size, align):
    """θ (A, A+1), x-first, of scipy's ``input pixel = matrix @ output pixel + offset`` (array order).

    The sampler's pixel of a normalised g is ((g + 1) size - 1) / 2
    (align_corners=False) or (g + 1) (size - 1) / 2 (True), on both sides.
    """
    ndim = len(in_size)
    theta = np.zeros((ndim, ndim + 1))
    for i in range(ndim):
        if align:
            if in_size[i] <= 1:
                continue  # one pixel: every point reads it
            scale = 2.0 / (in_size[i] - 1)
            half = [(s - 1) / 2.0 for s in out_size]
            constant = scale * (np.dot(matrix[i], half) + offset[i]) - 1.0
            linear = [matrix[i, j] * half[j] * scale for j in range(ndim)]
        else:
            scale = 2.0 / in_size[i]
            constant = scale * (np.dot(matrix[i], [(s - 1) / 2.0 for s in out_size]) + offset[i]) + 1.0 / in_size[i] \
                - 1.0
            linear = [matrix[i, j] * out_size[j] / in_size[i] for j in range(ndim)]
        row = ndim - 1 - i
        for j in range(ndim):
            theta[row, ndim - 1 - j] = linear[j]
        theta[row, ndim] = constant
    return theta


def _pixel_box(matrix, offset, origin, shape):
    """Lowest and highest input pixel coordinate (array order) of an output box."""
    low = np.asarray(origin, np.float64)
    high = low + np.asarray(shape) - 1
    a, b = matrix * low, matrix * high
    return np.minimum(a, b).sum(axis=1) + offset, np.maximum(a, b).sum(axis=1) + offset


def affine_transform(image, matrix, offset=0.0, output_shape=None, order=1, output_chunks=None, *,
                     mode="constant", cval=0.0, prefilter=False):
    """A drop-in for ``dask_image.ndinterp.affine_transform`` on stn_numba's sampler.

    Every argument has dask-image's (and so scipy.ndimage's) meaning: an output
    pixel ``o`` reads the input at pixel ``matrix @ o + offset`` (array axis
    order, pixel centres at integer coordinates).

    Parameters
    ----------
    image : dask.array.Array, ndarray, zarr array or memmap, float32 or float64
        A 2-D image or 3-D volume. A NumPy array is wrapped with dask's
        automatic chunks; a zarr array (or h5py dataset, or memmap) is read
        region by region inside the tasks, so a worker's memory stays at a
        few chunks.
    matrix : array_like
        (ndim,) (a diagonal), (ndim, ndim), or homogeneous (ndim, ndim+1) or
        (ndim+1, ndim+1) (then ``offset`` is ignored, as in scipy).
    offset : float or sequence of float, optional
        Added to the transformed coordinate; one per axis, or one for all.
    output_shape : tuple of int, optional
        Default: the image's shape.
    order : {0, 1}, optional
        Nearest (0) or linear (1, default) interpolation.
    output_chunks : int or tuple, optional
        Chunks of the output. Default: the image's chunk shape (dask-image's
        default is one chunk for the whole output).
    mode : str, optional
        "constant" (default), "grid-constant", "nearest", "reflect" (alias
        "grid-mirror"), "mirror" or "grid-wrap". "wrap" (whose period is one
        pixel short of the image) is refused.
    cval : float, optional
        The value outside the image in modes "constant" and "grid-constant".
        Other modes ignore it.
    prefilter : bool, optional
        Accepted for compatibility; it changes nothing for orders 0 and 1.

    Returns
    -------
    dask.array.Array
        ``output_shape``, dtype of ``image``.

    Notes
    -----
    Mode "constant" is the sampler's zeros padding with ``cval`` where a
    point's input coordinate leaves [0, size - 1] on any axis, as scipy does;
    "grid-constant" is constant padding with ``fill_value=cval``; "nearest"
    is border padding; "reflect" reflection about the outer pixel edges
    (align_corners=False) and "mirror" about the corner pixel centres
    (align_corners=True); "grid-wrap" circular padding. Values equal scipy's and
    dask-image's to floating-point rounding (float64: 1e-9). One exception:
    order 0 at exact ties (a coordinate of k + 0.5): scipy rounds half up,
    the sampler half to even (as torch).
    """
    source = _is_source(image)
    image = image if source else _as_dask(image, "image")
    if len(image.shape) not in (2, 3):
        raise ValueError(f"image must be 2-D or 3-D, got {_describe(image)}")
    dtype = np.dtype(image.dtype)
    if dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise TypeError(f"image must have dtype float32 or float64 (the sampler's), got {dtype}; "
                        "convert it first, e.g. image.astype(np.float32)")
    dtype = dtype.newbyteorder("=")
    ndim = len(image.shape)
    x = _Source.of(image, lead=True) if source else _Image(image)
    linear, shift = _scipy_matrix(matrix, offset, ndim)
    if output_shape is None:
        output_shape = tuple(image.shape)
    try:
        output_shape = tuple(int(s) for s in output_shape)
    except (TypeError, ValueError):
        raise TypeError(f"output_shape must be a sequence of {ndim} ints, got {output_shape!r}") from None
    if len(output_shape) != ndim or min(output_shape) < 1:
        raise ValueError(f"output_shape must be {ndim} positive ints, got {output_shape}")
    if 0 in tuple(image.shape):
        raise ValueError(f"image must not be empty, got {_describe(image)}")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order not in (0, 1):
        raise ValueError(f"order must be 0 (nearest) or 1 (linear), got {order!r}; orders 2-5 need scipy's "
                         "spline prefilter, which stn_numba's sampler does not have")
    if not isinstance(mode, str) or mode not in _SCIPY_MODES:
        raise ValueError(f"mode must be one of {sorted(_SCIPY_MODES)}, got {mode!r}; 'wrap' (a period one pixel "
                         "short of the image) has no counterpart among the sampler's paddings")
    try:
        cval = float(cval)
    except (TypeError, ValueError):
        raise TypeError(f"cval must be a real number, got {_describe(cval)}") from None
    _flag(prefilter, "prefilter")
    if output_chunks is None:
        output_chunks = tuple(min(c, s) for c, s in zip(x.chunksize[2:], output_shape))
    out_chunks = _spatial_chunks(output_chunks, output_shape, "output_chunks")

    padding, align, constant = _SCIPY_MODES[mode]
    theta = _pixel_theta(linear, shift, image.shape, output_shape, align).astype(dtype)[None]
    op = _Op(True, _codes.NEAREST if order == 0 else _codes.BILINEAR, _codes.PADDING_MODES[padding], align,
             tuple(image.shape), output_shape, dtype, _thread_plan(), cval if padding == "constant" else 0.0)
    # whole chunks outside the image: cval ("constant"; "grid-constant" past the footprint)
    masks = {}
    starts = [_starts(c) for c in out_chunks]
    for jo in product(*(range(len(c)) for c in out_chunks)):
        origin = [int(starts[d][j]) for d, j in enumerate(jo)]
        shape = [out_chunks[d][j] for d, j in enumerate(jo)]
        low, high = _pixel_box(linear, shift, origin, shape)
        size = np.asarray(image.shape, np.float64)
        if constant:
            if np.any(high < 0) or np.any(low > size - 1):
                masks[jo] = cval
            elif np.any(low < 0) or np.any(high > size - 1):
                masks[jo] = _Mask(linear, shift, cval)
        elif padding == "constant" and (np.any(high < -1) or np.any(low > size)):
            masks[jo] = cval
    return _forward(op, x, out_chunks, theta=theta, masks=masks, squeeze=True, name="stn-affine-transform")
