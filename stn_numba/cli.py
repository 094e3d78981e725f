"""The ``stn-numba`` command (also ``python -m stn_numba``).

::

    stn-numba demo [--out DIR] [--epochs N] [--quick]
    stn-numba train --out DIR [--distortion R|RTS|P|E|TC] [--model cnn|st-cnn]
                    [--transform affine|attention|similarity|projective|tps]
                    [--epochs N] [--batch-size N] [--lr LR] [--seed N] [--resume] [--mnist-dir DIR]
    stn-numba evaluate CHECKPOINT [--distortion ...] [--mnist-dir DIR] [--json]
    stn-numba table1 --mnist-dir DIR --out DIR [--epochs N] [--distortions R,RTS,P,E]
                     [--models cnn,st-cnn-aff,st-cnn-proj,st-cnn-tps] [--batch-size N] [--lr LR] [--seed N]

Bad arguments print the usage and exit with status 2; a run that cannot go
on (unreadable data, an unwritable directory, nothing to resume) prints one
line and exits with status 1; Ctrl-C exits with 130, and ``--resume``
continues from the last complete epoch (``table1``: the same command again).
"""

import _thread
import argparse
import contextlib
import dataclasses
import json
import os
import sys
import threading

from . import experiments, table1
from .data import DISTORTIONS
from .nn.transformer import TRANSFORMS

__all__ = ["main"]

_TRAIN_DEFAULTS = experiments.Config()


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _choices(allowed):
    """An argparse type: a comma-separated list of names from ``allowed``, duplicates dropped."""
    def parse(text):
        names = [name.strip() for name in text.split(",")]
        for name in names:
            if name not in allowed:
                raise argparse.ArgumentTypeError(f"invalid choice {name!r} (choose from {', '.join(allowed)})")
        return tuple(dict.fromkeys(names))
    return parse


def _parser():
    parser = argparse.ArgumentParser(
        prog="stn-numba",
        description="Spatial transformer networks (Jaderberg et al., 2015) on distorted MNIST, in NumPy + Numba.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="train a CNN and an ST-CNN on RTS digits, print a table, write report.json and figures",
        description="Train a CNN and an ST-CNN (same classifier) on rotated, translated and scaled (RTS) "
                    "digits of the bundled 4,000/1,000 MNIST split; write DIR/report.json, "
                    "DIR/transformed.png, DIR/curves.png and each model's checkpoint.")
    demo.add_argument("--out", default="stn-demo", metavar="DIR", help="output directory (default: %(default)s)")
    demo.add_argument("--epochs", type=_positive_int, metavar="N",
                      help=f"epochs per model (default: {experiments.DEMO_EPOCHS}, 1 with --quick)")
    demo.add_argument("--quick", action="store_true",
                      help=f"smoke run on {experiments.QUICK_DIGITS[0]} training and "
                           f"{experiments.QUICK_DIGITS[1]} test digits")

    train = commands.add_parser(
        "train", help="train one model, checkpointing every epoch",
        description="Train one model on one distortion. Every epoch writes DIR/checkpoint.npz (atomically) "
                    "and appends a line to DIR/metrics.jsonl; --resume continues from the checkpoint.")
    train.add_argument("--out", required=True, metavar="DIR", help="directory for the checkpoint and metrics")
    train.add_argument("--distortion", choices=tuple(DISTORTIONS),
                       help=f"the paper's distortion (default: {_TRAIN_DEFAULTS.distortion})")
    train.add_argument("--model", choices=experiments.MODELS, help=f"default: {_TRAIN_DEFAULTS.model}")
    train.add_argument("--transform", choices=tuple(TRANSFORMS),
                       help=f"the spatial transformer's family (default: {_TRAIN_DEFAULTS.transform})")
    train.add_argument("--epochs", type=_positive_int, metavar="N", help=f"default: {_TRAIN_DEFAULTS.epochs}")
    train.add_argument("--batch-size", type=_positive_int, metavar="N",
                       help=f"default: {_TRAIN_DEFAULTS.batch_size}")
    train.add_argument("--lr", type=_positive_float, help=f"initial learning rate (default: {_TRAIN_DEFAULTS.lr})")
    train.add_argument("--seed", type=int, help=f"default: {_TRAIN_DEFAULTS.seed}")
    train.add_argument("--train-limit", type=_positive_int, metavar="N", help="use only the first N training digits")
    train.add_argument("--test-limit", type=_positive_int, metavar="N", help="use only the first N test digits")
    train.add_argument("--mnist-dir", metavar="DIR",
                       help="a folder with the four MNIST IDX files (default: the bundled subset)")
    train.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.npz")

    evaluate = commands.add_parser(
        "evaluate", help="test error of a checkpoint",
        description="Evaluate a checkpoint written by 'stn-numba train' or 'stn-numba demo' on the fixed test set.")
    evaluate.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint.npz")
    evaluate.add_argument("--distortion", choices=tuple(DISTORTIONS),
                          help="test on this distortion (default: the one it was trained on)")
    evaluate.add_argument("--mnist-dir", metavar="DIR", help="a folder with the four MNIST IDX files")
    evaluate.add_argument("--json", action="store_true", help="print the result as JSON")

    recipe = table1.DEFAULT_RECIPE
    table = commands.add_parser(
        "table1", help="the paper's Table 1: CNN and ST-CNNs on R, RTS, P and E digits of the full MNIST",
        description="Train every cell (distortion × model) of Table 1 of the paper, each in DIR/<distortion>/"
                    "<model>/ with a checkpoint every epoch; write DIR/table1.json, DIR/table1.md (ours beside "
                    "the paper's) and a figure per distortion after each cell. Finished cells are skipped and "
                    "unfinished ones resumed, so the same command continues an interrupted table. The recipe "
                    "of a table is fixed when it starts (DIR/table1_recipe.json).")
    table.add_argument("--mnist-dir", required=True, metavar="DIR",
                       help="a folder with the four MNIST IDX files (scripts/build_full_mnist.py builds them)")
    table.add_argument("--out", required=True, metavar="DIR", help="the table's directory")
    table.add_argument("--distortions", type=_choices(table1.DISTORTIONS), default=table1.DISTORTIONS,
                       metavar="LIST", help=f"comma-separated (default: {','.join(table1.DISTORTIONS)})")
    table.add_argument("--models", type=_choices(tuple(table1.MODELS)), default=tuple(table1.MODELS),
                       metavar="LIST", help=f"comma-separated (default: {','.join(table1.MODELS)})")
    table.add_argument("--epochs", type=_positive_int, metavar="N", help=f"per cell (default: {recipe.epochs})")
    table.add_argument("--batch-size", type=_positive_int, metavar="N", help=f"default: {recipe.batch_size}")
    table.add_argument("--lr", type=_positive_float, help=f"initial learning rate (default: {recipe.lr})")
    table.add_argument("--seed", type=int, help=f"default: {recipe.seed}")
    table.add_argument("--train-limit", type=_positive_int, metavar="N", help="use only the first N training digits")
    table.add_argument("--test-limit", type=_positive_int, metavar="N", help="use only the first N test digits")
    return parser


def _demo(args):
    print(f"stn-numba demo: CNN vs ST-CNN on RTS digits, writing to {args.out}", flush=True)
    report = experiments.run_demo(args.out, epochs=args.epochs, quick=args.quick, echo=_echo)
    machine = report["machine"]
    print()
    print(experiments.results_table(report))
    print(f"{_epochs(report['epochs'])} on {report['train_digits']} training digits, test error on "
          f"{report['test_digits']} test digits; {machine['cpu']}, {machine['numba_threads']} threads, "
          f"total {report['total_seconds']:.0f} s")
    print("wrote " + ", ".join(os.path.join(args.out, name)
                               for name in ("report.json", "transformed.png", "curves.png")))
    return 0


def _train(args):
    given = {field.name: getattr(args, field.name) for field in dataclasses.fields(experiments.Config)
             if getattr(args, field.name, None) is not None}
    config = experiments.resume_config(args.out, **given) if args.resume else experiments.Config(**given)
    run = experiments.train(config, args.out, resume=args.resume, echo=_echo)
    summary = run.summary
    print(f"{config.model} on {config.distortion}: test error {summary['test_error_pct']:.2f}% after "
          f"{_epochs(summary['epochs'])} ({summary['train_seconds']:.1f} s of training, after "
          f"{summary['compile_seconds']:.1f} s compiling kernels); "
          f"checkpoint {os.path.join(args.out, experiments.CHECKPOINT)}, "
          f"metrics {os.path.join(args.out, experiments.METRICS)}")
    return 0


def _evaluate(args):
    result = experiments.evaluate_checkpoint(args.checkpoint, args.distortion, args.mnist_dir)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        config = result["config"]
        model = config["model"] + (f" ({config['transform']})" if config["model"] == "st-cnn" else "")
        print(f"{model} after {_epochs(result['epoch'])} on {config['distortion']}: test error "
              f"{result['test_error_pct']:.2f}%, loss {result['test_loss']:.4f} on {result['test_digits']} "
              f"{result['distortion']} test digits")
    return 0


def _table1(args):
    changes = {field.name: getattr(args, field.name) for field in dataclasses.fields(table1.Recipe)
               if getattr(args, field.name, None) is not None}
    print(f"stn-numba table1: {len(args.distortions) * len(args.models)} cells "
          f"({','.join(args.distortions)} × {','.join(args.models)}), writing to {args.out}", flush=True)
    errors = table1.run_table(args.mnist_dir, args.out, args.distortions, args.models, echo=_echo, **changes)
    print()
    print(_table_text(errors))
    print("wrote " + ", ".join(os.path.join(args.out, name) for name in ("table1.json", "table1.md")))
    return 0


def _table_text(errors):
    """Test errors in %, ours (paper's), one row per model."""
    width = max(map(len, table1.LABELS.values()))
    lines = [f"{'test error %':<{width}}" + "".join(f"{d:>14}" for d in table1.DISTORTIONS)]
    for model, label in table1.LABELS.items():
        cells = []
        for distortion in table1.DISTORTIONS:
            ours = errors.get(distortion, {}).get(model)
            cells.append(f"{'—' if ours is None else f'{ours:.2f}'} ({table1.PAPER[distortion][model]})")
        lines.append(f"{label:<{width}}" + "".join(f"{cell:>14}" for cell in cells))
    return "\n".join(lines + ["ours (the paper's); — = not run or not finished"])


def _epochs(count):
    return f"{count} epoch" + ("" if count == 1 else "s")


def _echo(line):
    print(line, flush=True)


def _describe(error):
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.strerror}: {error.filename}"
    return str(error)


@contextlib.contextmanager
def _interrupts_kept():
    """Ctrl-C while Numba compiles can land in one of llvmlite's ctypes
    callbacks, where Python reports the KeyboardInterrupt as unraisable and
    drops it. Interrupt the main thread again a moment later, once the
    callback has returned (from a timer thread: raised in the hook itself, it
    would be dropped too)."""
    previous = sys.unraisablehook
    timers = []

    def hook(unraisable):
        if issubclass(unraisable.exc_type, KeyboardInterrupt):
            timers.append(threading.Timer(0.05, _thread.interrupt_main))
            timers[-1].start()
        else:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
        for timer in timers:  # none may fire once the command is over
            timer.cancel()


def _run(args):
    with _interrupts_kept():
        if args.command == "demo":
            return _demo(args)
        if args.command == "train":
            return _train(args)
        if args.command == "table1":
            return _table1(args)
        return _evaluate(args)


def main(argv=None):
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except (OSError, ValueError, experiments.ExperimentError) as error:
        print(f"stn-numba {args.command}: error: {_describe(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = {"train": "; continue from the last epoch with --resume",
                "table1": "; the same command continues from the last finished epoch"}.get(args.command, "")
        print(f"stn-numba {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
