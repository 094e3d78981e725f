"""Reusable benchmark machinery: timing, worker subprocesses, threads, machine facts.

Every benchmark script of ``benchmarks/`` is built from these pieces:

- a *worker* is a module run as ``python -m benchmarks.<module> ...`` in its own
  process, with the thread count fixed through the environment
  (:func:`thread_env`) and again in-process (:func:`set_threads`). It times
  callables with :func:`time_call` and hands one JSON-able dict back with
  :func:`emit`;
- the *parent* starts workers with :func:`run_worker` and gets that dict back;
- a *serving* worker (:class:`Worker` in the parent, :func:`serve` in the
  worker) stays alive and answers requests, one JSON line each way, so that
  several implementations, each in its own process, can take turns on the
  same measurement.

Implementations run in separate processes because their OpenMP pools compete:
torch's and Numba's pools in one process can make either many times slower.
"""

import datetime
import gc
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

#: The repository root; workers run with it as the working directory.
REPO_ROOT = Path(__file__).resolve().parent.parent

#: Prefix of the one stdout line that carries a worker's result.
RESULT_MARKER = "@@BENCH-RESULT@@ "

#: Environment variables that size thread pools before a library starts one.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")

#: Distributions whose versions the reports name (absent ones are skipped).
LIBRARIES = ("stn-numba", "numpy", "numba", "llvmlite", "scipy", "torch", "opencv-python-headless",
             "opencv-python", "numba-cuda", "matplotlib")


class WorkerError(RuntimeError):
    """A worker subprocess failed or returned no result."""


def thread_env(threads, extra=None):
    """The environment for a worker: this process's, with every thread pool sized to ``threads``.

    Parameters
    ----------
    threads : int
        Threads for OpenMP, MKL, OpenBLAS and Numba.
    extra : dict, optional
        More variables to set (a value of None removes the variable).

    Returns
    -------
    dict
    """
    env = dict(os.environ)
    env.update({name: str(threads) for name in THREAD_VARIABLES})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def set_threads(threads):
    """Set the thread count of every threaded library this process has imported.

    Call it in a worker after importing the libraries it times; it never
    imports one (importing torch just to size its pool would start that pool).

    Returns
    -------
    dict
        Library name → thread count it reports afterwards.
    """
    applied = {}
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        applied["numba"] = numba.get_num_threads()
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
        applied["torch"] = torch.get_num_threads()
    if "cv2" in sys.modules:
        import cv2

        cv2.setNumThreads(threads)
        applied["cv2"] = cv2.getNumThreads()
    return applied


def time_call(function, *, warmup=1, min_repeats=5, max_repeats=50, budget_s=1.0, sync=None, keep_times=False):
    """Time ``function()`` with ``time.perf_counter``: warm-up calls, then repeats.

    The warm-up calls are not timed, so a JIT compile on the first call is
    excluded. Repeats go on until ``max_repeats`` or until ``budget_s`` seconds
    of timed calls are spent, but never fewer than ``min_repeats``. The garbage
    collector is off while timing.

    Parameters
    ----------
    function : callable
        Called with no arguments; its result is kept for one call and dropped.
    warmup : int, optional
        Untimed calls first.
    min_repeats, max_repeats : int, optional
        Bounds on the timed calls.
    budget_s : float, optional
        Time after which no further repeat starts (once ``min_repeats`` are done).
    sync : callable, optional
        Called after each call, inside the timed region (e.g. a GPU synchronise).
    keep_times : bool, optional
        Also return every call's time (``times_ms``, in call order).

    Returns
    -------
    dict
        ``median_ms``, ``q1_ms``, ``q3_ms``, ``iqr_ms``, ``min_ms``, ``repeats``
        and ``warmup``.
    """
    for _ in range(warmup):
        function()
        if sync is not None:
            sync()
    times = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        spent = 0.0
        while len(times) < max_repeats and (len(times) < min_repeats or spent < budget_s):
            start = time.perf_counter()
            function()
            if sync is not None:
                sync()
            elapsed = time.perf_counter() - start
            times.append(elapsed)
            spent += elapsed
    finally:
        if gc_was_enabled:
            gc.enable()
    summary = summarize(times, warmup=warmup)
    return {**summary, "times_ms": [1e3 * t for t in times]} if keep_times else summary


def summarize(times_s, warmup=0):
    """Median, quartiles and IQR in milliseconds of a list of durations in seconds."""
    ms = sorted(1e3 * t for t in times_s)
    if len(ms) >= 2:
        q1, median, q3 = statistics.quantiles(ms, n=4, method="inclusive")
    else:
        q1 = median = q3 = ms[0]
    return {"median_ms": median, "q1_ms": q1, "q3_ms": q3, "iqr_ms": q3 - q1, "min_ms": ms[0],
            "repeats": len(ms), "warmup": warmup}


def emit(result):
    """Hand ``result`` (JSON-able) from a worker to :func:`run_worker` on stdout."""
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()


def serve(handle):
    """The worker side of :class:`Worker`: answer each JSON request line on stdin
    with :func:`emit` of ``handle(request)``, until stdin closes."""
    for line in sys.stdin:
        emit(handle(json.loads(line)))


def rotated(keys, turn):
    """``keys`` in the order of turn number ``turn``: starting at position ``turn`` (cyclically), so
    that each of them goes first as often as the others."""
    keys = list(keys)
    shift = turn % len(keys) if keys else 0
    return keys[shift:] + keys[:shift]


class Worker:
    """A serving worker process (``python -m module *args``, which calls
    :func:`serve`), alive until :meth:`close`.

    Implementations timed in turn, request by request, each in its own live
    process, share every slow phase of a shared machine, which separate
    processes run one after the other do not. ``threads``, ``env`` as for
    :func:`run_worker`; ``timeout`` bounds each answer (seconds).
    """

    def __init__(self, module, args=(), *, threads, env=None, timeout=None):
        argv = [sys.executable, "-m", module, *map(str, args)]
        self.command = " ".join(argv)
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._process = subprocess.Popen(argv,
                                         env=thread_env(threads, env), cwd=REPO_ROOT, text=True, bufsize=1,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self._results = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self._process.stdout:
            if line.startswith(RESULT_MARKER):
                self._results.put(json.loads(line[len(RESULT_MARKER):]))
        self._results.put(None)  # the worker ended

    def answer(self):
        """The worker's next result (its first is what it says once started)."""
        try:
            result = self._results.get(timeout=self.timeout)
        except queue.Empty:
            self.close()
            raise WorkerError(f"{self.command} gave no answer within {self.timeout} s") from None
        if result is None:
            self._process.wait()
            self._stderr.seek(0)
            tail = "\n".join(self._stderr.read().strip().splitlines()[-20:])
            raise WorkerError(f"{self.command} exited with {self._process.returncode} and no result:\n{tail}")
        return result

    def request(self, message):
        """Send ``message`` (JSON-able) and return the worker's answer."""
        try:
            self._process.stdin.write(json.dumps(message) + "\n")
            self._process.stdin.flush()
        except OSError:
            pass  # it has ended: answer() says why
        return self.answer()

    def close(self):
        """End the worker (closing its stdin; killed if it does not end in 10 s)."""
        try:
            self._process.stdin.close()
        except OSError:
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._stderr.close()


def start_workers(module, impls, worker_args, *, threads, env=None, timeout=None):
    """A serving :class:`Worker` of ``module`` per implementation, and why the others did not start.

    ``worker_args(impl)`` and ``env(impl)`` give a worker's arguments and
    extra environment. A worker whose first answer is ``{"unavailable": why}``,
    or that fails before answering, is closed. Returns ``(workers, reasons)``,
    both dicts by implementation.
    """
    workers, reasons = {}, {}
    for impl in impls:
        worker = Worker(module, worker_args(impl), threads=threads, env=env(impl) if env else None, timeout=timeout)
        try:
            reason = worker.answer().get("unavailable")
        except WorkerError as error:
            reason = f"worker failed: {error}"
        if reason is None:
            workers[impl] = worker
        else:
            worker.close()
            reasons[impl] = reason
    return workers, reasons


def run_each(module, requested, known, worker_args, *, threads, env=None):
    """:func:`run_worker` of ``module`` once per implementation in turn.

    ``requested`` is a comma-separated list, each among ``known`` (otherwise
    SystemExit); ``worker_args(impl)`` and ``env(impl)`` give a worker's
    arguments and extra environment. Returns the results by implementation;
    one whose worker fails is reported on stderr and left out.
    """
    results = {}
    for impl in requested.split(","):
        if impl not in known:
            raise SystemExit(f"--impl: unknown implementation {impl!r}; choose among {known}")
        try:
            results[impl] = run_worker(module, worker_args(impl), threads=threads, env=env(impl) if env else None)
        except WorkerError as error:
            print(f"{impl}: not measured ({error})", file=sys.stderr)
    return results


def run_worker(module, args=(), *, threads, env=None, timeout=None):
    """Run ``python -m module *args`` in a fresh process and return what it :func:`emit`-ted.

    Parameters
    ----------
    module : str
        A module name importable from the repository root, e.g. ``"benchmarks.bench_cuda"``.
    args : sequence of str, optional
        Its command-line arguments.
    threads : int
        Thread count for every pool (see :func:`thread_env`); the worker should
        also call :func:`set_threads` after its imports.
    env : dict, optional
        Extra environment variables (None removes one).
    timeout : float, optional
        Seconds before the worker is killed.

    Returns
    -------
    dict
        The worker's result, plus ``wall_s``, the whole process's wall time.

    Raises
    ------
    WorkerError
        If the worker exits non-zero, times out or emits no result; the message
        holds the tail of its stderr.
    """
    command = [sys.executable, "-m", module, *map(str, args)]
    start = time.perf_counter()
    try:
        process = subprocess.run(command, env=thread_env(threads, env), cwd=REPO_ROOT,
                                 capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise WorkerError(f"{' '.join(command)} ran past {timeout} s") from error
    wall_s = time.perf_counter() - start
    lines = [line for line in process.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if process.returncode != 0 or not lines:
        tail = "\n".join(process.stderr.strip().splitlines()[-20:])
        raise WorkerError(f"{' '.join(command)} exited with {process.returncode} "
                          f"and {'a' if lines else 'no'} result:\n{tail}")
    result = json.loads(lines[-1][len(RESULT_MARKER):])
    result["wall_s"] = wall_s
    return result


def copy_bandwidth(megabytes=256, repeats=5):
    """Memory-copy bandwidth of this process: a large ``np.copyto``, (read + write bytes) / time.

    One thread (NumPy's copy is serial), so it is the floor of a streaming
    kernel on one core; two threads may move somewhat more.

    Returns
    -------
    dict
        ``gb_per_s`` (median over repeats, 1 GB = 1e9 bytes), ``megabytes`` copied
        and the :func:`summarize` figures of the copy.
    """
    import numpy as np  # not at module level: start-up workers time their own imports

    count = megabytes * 2**20 // 4
    source = np.ones(count, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)  # touch the target's pages before timing
    timing = time_call(lambda: np.copyto(target, source), warmup=1, min_repeats=repeats,
                       max_repeats=repeats)
    moved = 2 * source.nbytes
    return {"gb_per_s": moved / (timing["median_ms"] * 1e-3) / 1e9, "megabytes": megabytes, **timing}


def cpu_model():
    """The CPU's model name, from /proc/cpuinfo (with its family and model numbers, which tell
    apart the generations a VM's bare "AMD EPYC" hides) or lscpu, else ``platform.processor()``."""
    try:
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if not key.strip():
                break  # the first processor's
            fields.setdefault(key.strip().lower(), value.strip())
        if "model name" in fields:
            numbers = ", ".join(f"{key} {fields[key]}" for key in ("cpu family", "model") if key in fields)
            return fields["model name"] + (f" ({numbers})" if numbers else "")
    except OSError:
        pass
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in output.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown CPU"


def blas_kernels():
    """Which kernels each loaded BLAS runs (threadpoolctl's "architecture"), after loading the one
    Numba calls (SciPy's) and NumPy's, with the ``OPENBLAS_CORETYPE`` this process was given: some
    machines set it to an older core than the CPU's, which slows OpenBLAS's products."""
    try:
        import numpy  # noqa: F401
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (scipy or threadpoolctl missing)"
    kernels = sorted({f"{info.get('internal_api')} {info.get('version')} {info.get('architecture')}"
                      for info in threadpool_info() if info.get("user_api") == "blas"})
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    return ", ".join(kernels) + (f" (OPENBLAS_CORETYPE={coretype})" if coretype else " (OPENBLAS_CORETYPE unset)")


def library_versions(names=LIBRARIES):
    """Installed versions of the distributions ``names`` (the absent ones left out)."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def machine_info(threads):
    """The facts a report's header names: CPU, cores, threads, OS, versions, date."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "threads": threads,
        "platform": platform.platform(),
        "versions": library_versions(),
        "blas": blas_kernels(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
