"""The demo's CNN recipe end to end: stn_numba against the same loop in torch.

Run from the repository root on an otherwise idle machine::

    python -m benchmarks.bench_demo                 # 30 epochs, 2 threads: a few minutes
    python -m benchmarks.bench_demo --quick         # smoke run: numbers mean nothing

``stn-numba demo`` trains its CNN (the Table-1 classifier on RTS digits of
the bundled 4,000 / 1,000 split: SGD with momentum 0.9, lr 0.02, cosine
schedule, batch 64, fresh distortions every epoch) and reports the time of
its training loop. This runs that recipe with stn_numba
(`stn_numba.experiments.train`, as the demo does) and with torch (the same
classifier built with ``torch.nn``, the same loop, on the very digits and
batch order stn_numba sees: both draw them from one seeded generator), each
in its own worker process with every thread pool sized to ``--threads``. The
train time counts the training loops only, as the demo's does: not the
distortions, the evaluations or stn_numba's compilation.
"""

import argparse
import dataclasses
import sys
import tempfile
import time

import numpy as np

IMPLEMENTATIONS = ("stn_numba", "torch")


def _stn_numba_run(config):
    from stn_numba.experiments import train

    with tempfile.TemporaryDirectory() as out_dir:
        run = train(config, out_dir, echo=lambda line: None)
    return {"train_s": sum(r["train_seconds"] for r in run.history), "images": sum(r["images"] for r in run.history),
            "test_error_pct": run.history[-1]["test_error_pct"]}


def _torch_run(config):
    import torch

    from stn_numba.data import distort
    from stn_numba.experiments import classifier, load_data

    data = load_data(config)
    torch.manual_seed(config.seed)
    model = classifier(data.image_hw, torch.nn)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    rng = np.random.default_rng(config.seed)  # the draws of stn_numba.experiments' epochs, in their order
    labels = torch.from_numpy(data.train_labels)
    train_s, seen = 0.0, 0
    for _ in range(config.epochs):
        images = torch.from_numpy(distort(data.train_images, config.distortion, rng))
        order = torch.from_numpy(rng.permutation(len(images)))
        model.train()
        started = time.perf_counter()
        for first in range(0, len(images), config.batch_size):
            index = order[first:first + config.batch_size]
            loss = torch.nn.functional.cross_entropy(model(images[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item()
        train_s += time.perf_counter() - started
        seen += len(images)
        scheduler.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.test_images)).argmax(dim=1).numpy()
    return {"train_s": train_s, "images": seen,
            "test_error_pct": 100.0 * float(np.mean(predicted != data.test_labels))}


def _config(args):
    from stn_numba.experiments import DEMO_EPOCHS, QUICK_DIGITS, Config

    config = Config(distortion="RTS", model="cnn", epochs=args.epochs or (1 if args.quick else DEMO_EPOCHS))
    if args.quick:
        config = dataclasses.replace(config, train_limit=QUICK_DIGITS[0], test_limit=QUICK_DIGITS[1])
    return config


def worker(args):
    from ._harness import emit, set_threads

    config = _config(args)
    run = {"torch": _torch_run, "stn_numba": _stn_numba_run}[args.impl]
    if args.impl == "torch":
        import torch  # noqa: F401  (imported before its pool is sized)
    else:
        import stn_numba.experiments  # noqa: F401
    threads = set_threads(args.threads)
    result = run(config)
    emit({"impl": args.impl, "threads": threads, "epochs": config.epochs,
          "images_per_s": result["images"] / result["train_s"], **result})
    return 0


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's 30 (1 with --quick)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--impl", default=",".join(IMPLEMENTATIONS),
                        help=f"comma-separated among {', '.join(IMPLEMENTATIONS)}")
    parser.add_argument("--quick", action="store_true", help="smoke run: 300 training and 200 test digits, 1 epoch")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = _parse(argv)
    if args.worker:
        return worker(args)
    from ._harness import machine_info, run_each

    machine = machine_info(args.threads)
    config = _config(args)
    print(f"The demo's CNN recipe (RTS, batch {config.batch_size}, {config.epochs} epochs), {args.threads} threads, "
          f"{machine.get('cpu', 'unknown CPU')}; BLAS: {machine['blas']}")
    def worker_args(impl):
        return (["--worker", "--impl", impl, "--threads", args.threads]
                + (["--epochs", args.epochs] if args.epochs else []) + (["--quick"] if args.quick else []))

    results = run_each("benchmarks.bench_demo", args.impl, IMPLEMENTATIONS, worker_args, threads=args.threads)
    baseline = results.get("torch", {}).get("train_s")
    print("| implementation | train s | img/s | test error | ratio vs torch |")
    print("|---|---|---|---|---|")
    for impl, r in results.items():
        ratio = f"{r['train_s'] / baseline:.2f}×" if baseline else "—"
        print(f"| {impl} | {r['train_s']:.1f} | {r['images_per_s']:.0f} | {r['test_error_pct']:.2f}% | {ratio} |")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
