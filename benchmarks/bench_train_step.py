"""One training step, stn_numba vs torch CPU: the PyTorch spatial-transformer
tutorial's model, or the CNN of the paper's Table 1 (``stn-numba table1``).

Run from the repository root::

    python -m benchmarks.bench_train_step              # tutorial model, batch 64, 28×28, float32, 2 threads
    python -m benchmarks.bench_train_step --model cnn --size 42 --batch 256   # the RTS CNN
    python -m benchmarks.bench_train_step --quick      # smoke run: numbers mean nothing

A tutorial step is ``zero_grad``, forward (localisation net, ``affine_grid``,
``grid_sample``, classifier with dropout in training mode), ``nll_loss``,
backward and an SGD step with momentum. A CNN step runs the Table-1
classifier (`stn_numba.experiments.classifier`: conv 9×9, pool, conv 7×7,
pool, linear; built with each library's ``nn``) with ``cross_entropy``, as
``table1`` trains it. Each implementation runs in its own
worker process (their OpenMP pools would compete in one), with every thread
pool sized to ``--threads`` and glibc keeping freed memory (`steady_malloc`);
the workers stay alive and time bursts of steps in turn (``--turns``), so
that a slow phase of the machine falls on both alike. The table gives
medians (and minima, which a busy machine disturbs less) of all the timed
steps after warm-up steps, and the ratios to torch. Run it on an otherwise
idle machine.

:func:`tutorial_net` is the tutorial's model written once against the
``torch.nn`` API; ``tests/test_torch_tutorial.py`` builds it with both
libraries and checks that they agree.
"""

import argparse
import sys

import numpy as np

IMPLEMENTATIONS = ("torch", "stn_numba")
MODELS = ("tutorial", "cnn")


def steady_malloc():
    """Each worker's glibc settings: keep freed memory (no trimming; mmap only above 32 MiB), as a long
    training loop's process ends up anyway, with the values stn_numba's own training runs apply
    (`stn_numba._memory.reuse_freed_memory`). Without them, in this short benchmark torch's step
    page-faulted 5,700-7,500 times (the OS zero-filling its freed activations again), against 0-120
    times a step in the demo's training loop (benchmarks/bench_demo.py), which made torch look 1.3x
    slower than it trains. (Imported here, in the parent: the workers import only what they time.)"""
    from stn_numba import _memory

    return {"MALLOC_TRIM_THRESHOLD_": _memory.TRIM_THRESHOLD, "MALLOC_MMAP_THRESHOLD_": _memory.LARGEST_MMAP_THRESHOLD}


def tutorial_net(nn, F):
    """The PyTorch STN tutorial's ``Net``, built with the given ``nn`` and ``F`` modules.

    Localisation: conv 8@7 → max-pool 2 → ReLU → conv 10@5 → max-pool 2 →
    ReLU → fc 90→32→6 (θ); then ``affine_grid`` + ``grid_sample``; classifier:
    conv 10@5, conv 20@5 with channel dropout, fc 320→50→10, log-softmax.
    The tutorial's identity initialisation of θ is left to the caller.
    """

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
            self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
            self.conv2_drop = nn.Dropout2d()
            self.fc1 = nn.Linear(320, 50)
            self.fc2 = nn.Linear(50, 10)

            # Spatial transformer localization-network
            self.localization = nn.Sequential(
                nn.Conv2d(1, 8, kernel_size=7),
                nn.MaxPool2d(2, stride=2),
                nn.ReLU(True),
                nn.Conv2d(8, 10, kernel_size=5),
                nn.MaxPool2d(2, stride=2),
                nn.ReLU(True),
            )

            # Regressor for the 3 * 2 affine matrix
            self.fc_loc = nn.Sequential(
                nn.Linear(10 * 3 * 3, 32),
                nn.ReLU(True),
                nn.Linear(32, 3 * 2),
            )

        def stn(self, x):
            xs = self.localization(x)
            xs = xs.view(-1, 10 * 3 * 3)
            theta = self.fc_loc(xs)
            theta = theta.view(-1, 2, 3)

            grid = F.affine_grid(theta, x.size(), align_corners=False)
            x = F.grid_sample(x, grid, align_corners=False)
            return x

        def forward(self, x):
            x = self.stn(x)

            x = F.relu(F.max_pool2d(self.conv1(x), 2))
            x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
            x = x.view(-1, 320)
            x = F.relu(self.fc1(x))
            x = F.dropout(x, training=self.training)
            x = self.fc2(x)
            return F.log_softmax(x, dim=1)

    return Net()


def _batch(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (batch, 1, size, size)).astype(np.float32), rng.integers(0, 10, batch)


def _model_and_loss(name, size, nn, F):
    """The model ``name`` built with ``nn`` and ``F``, and its training loss."""
    if name == "cnn":
        from stn_numba.experiments import classifier

        return classifier((size, size), nn).train(), F.cross_entropy
    return tutorial_net(nn, F).train(), F.nll_loss


def _torch_step(name, batch, size):
    import torch

    torch.manual_seed(0)
    model, loss_function = _model_and_loss(name, size, torch.nn, torch.nn.functional)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, targets = _batch(batch, size)
    images, targets = torch.from_numpy(images), torch.from_numpy(targets)

    def step():
        optimizer.zero_grad()
        loss = loss_function(model(images), targets)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def _stn_numba_step(name, batch, size):
    import stn_numba.nn as nn
    import stn_numba.nn.functional as F
    from stn_numba import optim
    from stn_numba.tensor import Tensor, manual_seed

    manual_seed(0)
    model, loss_function = _model_and_loss(name, size, nn, F)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, targets = _batch(batch, size)
    images = Tensor(images)

    def step():
        optimizer.zero_grad()
        loss = loss_function(model(images), targets)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def worker(args):
    """A serving worker: warm-up steps, then a burst of timed steps per request (`turns`)."""
    from ._harness import emit, serve, set_threads, time_call

    step = {"torch": _torch_step, "stn_numba": _stn_numba_step}[args.impl](args.model, args.batch, args.size)
    threads = set_threads(args.threads)
    for _ in range(args.warmup):
        step()
    emit({"impl": args.impl, "threads": threads})

    def burst(request):
        # one untimed step first: the other worker just had the caches and the cores
        timing = time_call(step, warmup=1, min_repeats=request["min_steps"], max_repeats=10 * request["min_steps"],
                           budget_s=request["budget_s"], keep_times=True)
        return {"times_ms": timing["times_ms"], "loss": step()}

    serve(burst)


def turns(impls, worker_args, env, args):
    """Each implementation's step times: serving workers, alive together, time bursts of steps in turn
    (``args.turns`` turns, the order rotating), so that a slow phase of a shared machine falls on both
    alike; the budget and the fewest steps are shared among the turns. Returns the
    :func:`~benchmarks._harness.summarize` figures (plus ``loss``) by implementation; one whose worker
    fails is reported on stderr and left out."""
    from ._harness import WorkerError, rotated, start_workers, summarize

    workers, failed = start_workers("benchmarks.bench_train_step", impls, worker_args, threads=args.threads,
                                    env=env, timeout=600)
    for impl, reason in failed.items():
        print(f"{impl}: not measured ({reason})", file=sys.stderr)
    times, losses = {impl: [] for impl in workers}, {}
    try:
        request = {"budget_s": args.budget / args.turns, "min_steps": max(1, -(-args.repeats // args.turns))}
        for turn in range(args.turns):
            for impl in rotated(workers, turn):
                try:
                    answer = workers[impl].request(request)
                except WorkerError as error:
                    print(f"{impl}: not measured ({error})", file=sys.stderr)
                    workers.pop(impl).close()
                    times.pop(impl)
                    continue
                times[impl] += answer["times_ms"]
                losses[impl] = answer["loss"]
    finally:
        for worker in workers.values():
            worker.close()
    return {impl: {**summarize([t / 1e3 for t in values]), "loss": losses[impl]} for impl, values in times.items()}


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tutorial", choices=MODELS,
                        help="the STN tutorial's model, or the Table-1 CNN classifier")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="OpenBLAS/MKL threads of the stn_numba worker (default: --threads); its GEMMs are "
                             "small, and on a busy machine 1 was measured faster than 2")
    parser.add_argument("--impl", default=",".join(IMPLEMENTATIONS),
                        help=f"comma-separated among {', '.join(IMPLEMENTATIONS)}")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30, help="at least this many timed steps")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds of timed steps per implementation")
    parser.add_argument("--turns", type=int, default=8,
                        help="bursts of steps per implementation, taken in turn (the budget is shared among them)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 warm-up, 3 repeats, 2 turns")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.warmup, args.repeats, args.budget, args.turns = 1, 3, 0.0, 2
    if args.turns < 1:
        parser.error(f"--turns: expected a positive integer, got {args.turns}")
    return args


def main(argv=None):
    args = _parse(argv)
    if args.worker:
        worker(args)
        return 0
    from ._harness import machine_info

    machine = machine_info(args.threads)
    blas = "" if args.blas_threads is None else f" (stn_numba BLAS: {args.blas_threads})"
    title = {"tutorial": "Tutorial STN", "cnn": "Table-1 CNN"}[args.model]
    print(f"{title} training step, batch {args.batch}, {args.size}×{args.size}, float32, "
          f"{args.threads} threads{blas}, {machine.get('cpu', 'unknown CPU')}; BLAS: {machine['blas']}")
    def worker_args(impl):
        return ["--worker", "--impl", impl, "--model", args.model, "--batch", args.batch, "--size", args.size,
                "--threads", args.threads, "--warmup", args.warmup]

    malloc = steady_malloc()

    def env(impl):
        blas = {} if impl != "stn_numba" or args.blas_threads is None else {
            "OPENBLAS_NUM_THREADS": args.blas_threads, "MKL_NUM_THREADS": args.blas_threads}
        return {**malloc, **blas}

    impls = args.impl.split(",")
    unknown = [impl for impl in impls if impl not in IMPLEMENTATIONS]
    if unknown:
        raise SystemExit(f"--impl: unknown implementation {unknown[0]!r}; choose among {IMPLEMENTATIONS}")
    results = turns(impls, worker_args, env, args)
    baseline = results.get("torch", {}).get("median_ms")
    fastest = results.get("torch", {}).get("min_ms")
    print("| implementation | median ms | IQR ms | min ms | steps | ratio vs torch (medians) | ratio (minima) |")
    print("|---|---|---|---|---|---|---|")
    for impl, r in results.items():
        ratio = f"{r['median_ms'] / baseline:.2f}×" if baseline else "—"
        min_ratio = f"{r['min_ms'] / fastest:.2f}×" if fastest else "—"
        print(f"| {impl} | {r['median_ms']:.2f} | {r['iqr_ms']:.2f} | {r['min_ms']:.2f} | {r['repeats']} "
              f"| {ratio} | {min_ratio} |")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
