"""Table 1 of Jaderberg et al., "Spatial Transformer Networks" (2015): distorted MNIST, CNN vs ST-CNNs.

Each cell of the table is one training run of :func:`stn_numba.experiments.train`
(a distortion × a model) in its own directory ``OUT/<distortion>/<model>/``,
with its checkpoint after every epoch, so that every cell resumes on its own
and a table can be filled across several sittings: :func:`run_table` skips
finished cells, resumes unfinished ones and starts the others.

===========  ============================================================
model        what it is (:func:`stn_numba.experiments.build_model`)
===========  ============================================================
cnn          the plain CNN
st-cnn-aff   the ST-CNN with an affine spatial transformer
st-cnn-proj  the ST-CNN with a projective (8-parameter) one
st-cnn-tps   the ST-CNN with a thin-plate spline one (4×4 control points)
===========  ============================================================

The distortions are those of :mod:`stn_numba.data.distortions`: R, P and E
on 28×28 images, RTS on the 42×42 canvas, a fresh draw every epoch and the
fixed-seed test set of :data:`stn_numba.experiments.TEST_SEED`.

After every cell the table is written again: ``OUT/table1.json`` (test
error in %, ``null`` for a cell not finished yet), ``OUT/table1.md`` (ours
beside the paper's, with the recipe) and ``OUT/table1_cells.json`` (per-cell
details: epochs, times, config, machine). Each distortion gets a figure,
``OUT/<distortion>/transformed.png``: test digits and what each finished
ST-CNN's transformer made of them (the paper's Fig. 3), if matplotlib is
installed. ``OUT/table1_recipe.json`` fixes the recipe of the table in
``OUT``: a later call with other settings is refused instead of mixing them.

The default recipe
------------------
The paper trains each network far longer than 2 CPU cores allow in a few
hours. The default, :data:`DEFAULT_RECIPE`, keeps the demo's optimiser (SGD
with momentum 0.9, batch 64, lr 0.02 with the transformer at 0.1×, cosine
schedule) and trains every cell for :data:`DEFAULT_EPOCHS` epochs of the
60,000 training digits. On the CI kind of machine (AMD EPYC, 2 vCPUs, idle)
one epoch of all 16 cells (training, the test evaluation and the fresh
distortions) takes about 345 s: RTS 115 s (the CNN on the 42×42 canvas
alone 42 s), R, P and E about 77 s each. 20 epochs are then about 1.9 h,
plus about 3 s per cell for loading the data and, with an empty Numba
cache, a minute or two of compiling: about 2 hours, with room for the VM's
run-to-run spread. With another job holding one of the two cores, the
training rates measured about 0.6× those: about 2.9 hours. The README's
"Table 1" section says how these were measured.
"""

import dataclasses
import json
import os

import numpy as np

from . import experiments
from .data import distort, load_mnist, mnist
from .tensor import Tensor, no_grad

__all__ = ["DISTORTIONS", "MODELS", "PAPER", "DEFAULT_EPOCHS", "DEFAULT_RECIPE", "Recipe", "cell_config",
           "cell_directory", "run_table", "read_cells", "available_digits", "table", "markdown", "plot_distortion"]

DISTORTIONS = ("R", "RTS", "P", "E")
# Table 1 model name -> (experiments model, transform)
MODELS = {
    "cnn": ("cnn", "affine"),
    "st-cnn-aff": ("st-cnn", "affine"),
    "st-cnn-proj": ("st-cnn", "projective"),
    "st-cnn-tps": ("st-cnn", "tps"),
}
LABELS = {"cnn": "CNN", "st-cnn-aff": "ST-CNN Aff", "st-cnn-proj": "ST-CNN Proj", "st-cnn-tps": "ST-CNN TPS"}
# The paper's test errors (%), Table 1 (MNIST part).
PAPER = {
    "R": {"cnn": 1.2, "st-cnn-aff": 0.7, "st-cnn-proj": 0.8, "st-cnn-tps": 0.7},
    "RTS": {"cnn": 0.8, "st-cnn-aff": 0.5, "st-cnn-proj": 0.6, "st-cnn-tps": 0.5},
    "P": {"cnn": 1.5, "st-cnn-aff": 0.8, "st-cnn-proj": 0.8, "st-cnn-tps": 0.8},
    "E": {"cnn": 1.4, "st-cnn-aff": 1.2, "st-cnn-proj": 1.3, "st-cnn-tps": 1.1},
}
DEFAULT_EPOCHS = 20
RECIPE_FILE = "table1_recipe.json"
FIGURE = "transformed.png"
FIGURE_DIGITS = 10
_FORMAT = "stn-numba-table1-1"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The training settings shared by every cell of a table (see :class:`stn_numba.experiments.Config`)."""

    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 64
    lr: float = 0.02
    momentum: float = 0.9
    seed: int = 0
    train_limit: int | None = None
    test_limit: int | None = None

    def __post_init__(self):
        experiments.Config(**dataclasses.asdict(self))        # the same checks as a training run


DEFAULT_RECIPE = Recipe()


def cell_config(distortion, model, recipe, mnist_dir):
    """The :class:`~stn_numba.experiments.Config` of one cell."""
    if distortion not in DISTORTIONS:
        raise ValueError(f"distortion must be one of {', '.join(DISTORTIONS)}, got {distortion!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    kind, transform = MODELS[model]
    return experiments.Config(distortion=distortion, model=kind, transform=transform,
                              mnist_dir=None if mnist_dir is None else os.path.abspath(mnist_dir),
                              **dataclasses.asdict(recipe))


def cell_directory(out_dir, distortion, model):
    return os.path.join(os.fspath(out_dir), distortion, model)


# ------------------------------------------------------------------ the recipe of a table directory


def _settle_recipe(out_dir, mnist_dir, changes):
    """The recipe of the table in ``out_dir``: the stored one, or the defaults with ``changes``.

    Returns ``(recipe, stored)``. A stored recipe must agree with every
    setting given in ``changes`` and with ``mnist_dir``; otherwise an
    ExperimentError names the differences. :func:`_store_recipe` stores a new one.
    """
    path = os.path.join(out_dir, RECIPE_FILE)
    mnist_dir = os.path.abspath(mnist_dir)
    if not os.path.exists(path):
        return dataclasses.replace(DEFAULT_RECIPE, **changes), False
    try:
        with open(path) as file:
            stored = json.load(file)
        if stored.get("format") != _FORMAT:
            raise ValueError(f"no '{_FORMAT}' format tag")
        recipe = Recipe(**stored["recipe"])
    except (ValueError, TypeError, KeyError) as error:
        raise experiments.ExperimentError(f"{path} is not a stn-numba table1 recipe ({error})") from None
    differences = [f"{name}={value!r} (the table's: {getattr(recipe, name)!r})"
                   for name, value in changes.items() if getattr(recipe, name) != value]
    if stored.get("mnist_dir") != mnist_dir:
        differences.append(f"--mnist-dir {mnist_dir} (the table's: {stored.get('mnist_dir')})")
    if differences:
        raise experiments.ExperimentError(f"{out_dir} holds a table made with other settings: "
                                          f"{', '.join(differences)}; use them, or another --out")
    return recipe, True


def _store_recipe(out_dir, mnist_dir, recipe):
    experiments._write_atomically(os.path.join(out_dir, RECIPE_FILE), json.dumps(
        {"format": _FORMAT, "recipe": dataclasses.asdict(recipe), "mnist_dir": os.path.abspath(mnist_dir)},
        indent=2) + "\n")


# ------------------------------------------------------------------ the cells and the table


def _cell_state(out_dir, distortion, model):
    """(status, config, history) of one cell: "done", "partial" or "missing" (then config and history None)."""
    path = os.path.join(cell_directory(out_dir, distortion, model), experiments.CHECKPOINT)
    if not os.path.exists(path):
        return "missing", None, None
    state, config = experiments.read_checkpoint(path)
    history = json.loads(str(state["history"]))
    return ("done" if len(history) >= config.epochs else "partial"), config, history


def _summary(history):
    return {
        "epochs_done": len(history),
        "test_error_pct": round(history[-1]["test_error_pct"], 4) if history else None,
        "train_seconds": round(sum(r["train_seconds"] for r in history), 1),
        "eval_seconds": round(sum(r["eval_seconds"] for r in history), 1),
        "images_per_second": round(sum(r["images"] for r in history)
                                   / max(sum(r["train_seconds"] for r in history), 1e-9), 1) if history else None,
        "train_digits": history[0]["images"] if history else None,
    }


def read_cells(out_dir):
    """Every cell found under ``out_dir``, in table order: {(distortion, model): details}."""
    cells = {}
    for distortion in DISTORTIONS:
        for model in MODELS:
            status, config, history = _cell_state(out_dir, distortion, model)
            if status != "missing":
                cells[(distortion, model)] = dict(status=status, epochs=config.epochs, **_summary(history),
                                                  config=dataclasses.asdict(config))
    return cells


def table(cells, requested=()):
    """The ``table1.json`` dict: {distortion: {model: test error % or None}} in table order.

    A cell appears if it was found or ``requested``; None until it is finished.
    """
    result = {}
    for distortion in DISTORTIONS:
        for model in MODELS:
            key = (distortion, model)
            if key in cells or key in requested:
                done = cells.get(key, {}).get("status") == "done"
                result.setdefault(distortion, {})[model] = (round(cells[key]["test_error_pct"], 2) if done
                                                            else None)
    return result


def _number(value):
    return "—" if value is None else f"{value:.2f}"


def _bold(value):
    return "—" if value is None else f"**{value:.2f}**"


def available_digits(mnist_dir):
    """(training, test) digits in the IDX files of ``mnist_dir`` (reads the label files only)."""
    return tuple(len(mnist.read_idx(mnist._find_idx_file(os.fspath(mnist_dir), split, "labels")))
                 for split in ("train", "test"))


def _used_digits(available, recipe):
    return tuple(n if limit is None else min(n, limit) for n, limit in zip(available, (recipe.train_limit,
                                                                                      recipe.test_limit)))


def markdown(cells, recipe, digits, requested=(), figures=()):
    """``table1.md``: our test errors beside the paper's, the recipe, and per-cell details.

    ``digits`` is the (training, test) digits of every cell; ``figures`` the
    distortions whose figure exists.
    """
    errors = table(cells, requested)
    finished = sum(value is not None for row in errors.values() for value in row.values())
    total_cells = len(DISTORTIONS) * len(MODELS)
    lines = ["# Table 1: distorted MNIST, test error (%)", ""]
    if finished < total_cells:
        lines += [f"**Partial table: {finished} of {total_cells} cells finished** "
                  "(— = not finished; `stn-numba table1` with the same settings continues it).", ""]
    lines += ["Each cell: **ours** (the paper's), test error in %.", "",
              "| model | " + " | ".join(DISTORTIONS) + " |", "|---|" + "---|" * len(DISTORTIONS)]
    for model in MODELS:
        row = [f"{_bold(errors.get(d, {}).get(model))} ({PAPER[d][model]})" for d in DISTORTIONS]
        lines.append(f"| {LABELS[model]} | " + " | ".join(row) + " |")
    full = tuple(digits) == (60000, 10000)
    lines += ["",
              f"Ours: stn_numba, {recipe.epochs} epoch{'s' if recipe.epochs != 1 else ''} per cell, SGD with "
              f"momentum {recipe.momentum}, batch {recipe.batch_size}, lr {recipe.lr} (the spatial transformer "
              f"at {experiments.TRANSFORMER_LR_FACTOR}×), cosine schedule, seed {recipe.seed}; fresh "
              f"distortions every epoch, one fixed-seed distorted test set per distortion; "
              f"{digits[0]:,} training and {digits[1]:,} test digits"
              + (" (the full MNIST)." if full else ": **not the full MNIST, not comparable with the paper**."),
              "The paper's: Jaderberg et al., Spatial Transformer Networks (NeurIPS 2015), Table 1, "
              "full MNIST, trained much longer.",
              "", "| distortion | model | status | epochs | test error | train time | img/s |",
              "|---|---|---|---|---|---|---|"]
    for (distortion, model), cell in cells.items():
        lines.append(f"| {distortion} | {model} | {cell['status']} | {cell['epochs_done']}/{cell['epochs']} | "
                     f"{_number(cell['test_error_pct'])}% | {cell['train_seconds']:.0f} s | "
                     f"{cell['images_per_second'] or 0:.0f} |")
    total = sum(c["train_seconds"] + c["eval_seconds"] for c in cells.values())
    lines += ["", f"Training and evaluation time of the cells so far: {total / 3600:.2f} h.", ""]
    for distortion in figures:
        lines.append(f"![{distortion}: test digits and the spatial transformers' output]"
                     f"({distortion}/{FIGURE})")
    return "\n".join(lines) + "\n"


def _write_results(out_dir, recipe, digits, requested, machine):
    cells = read_cells(out_dir)
    errors = table(cells, requested)
    experiments._write_atomically(os.path.join(out_dir, "table1.json"), json.dumps(errors, indent=2) + "\n")
    figures = [d for d in DISTORTIONS if os.path.exists(os.path.join(out_dir, d, FIGURE))]
    experiments._write_atomically(os.path.join(out_dir, "table1.md"),
                                  markdown(cells, recipe, digits, requested, figures))
    details = {"recipe": dataclasses.asdict(recipe), "train_digits": digits[0], "test_digits": digits[1],
               "paper": PAPER, "machine": machine,
               "cells": {f"{d}/{m}": cell for (d, m), cell in cells.items()}}
    experiments._write_atomically(os.path.join(out_dir, "table1_cells.json"), json.dumps(details, indent=2) + "\n")
    return errors, cells


# ------------------------------------------------------------------ the figures


def _transformer_outputs(out_dir, distortion, images):
    """{model: what its trained transformer makes of ``images``} for the finished ST-CNN cells."""
    outputs = {}
    for model in MODELS:
        if MODELS[model][0] != "st-cnn":
            continue
        status, config, _ = _cell_state(out_dir, distortion, model)
        if status != "done":
            continue
        state, _ = experiments.read_checkpoint(os.path.join(cell_directory(out_dir, distortion, model),
                                                            experiments.CHECKPOINT))
        network = experiments.build_model(config, tuple(int(s) for s in state["image_hw"]))
        network.load_state_dict(state["model"])
        network.eval()
        with no_grad():
            outputs[model] = network.transformer(Tensor(images)).data
    return outputs


def plot_distortion(out_dir, distortion, images):
    """Write ``OUT/<distortion>/transformed.png``: ``images`` and each finished ST-CNN's transformer output.

    Returns the path, or None when no ST-CNN cell of ``distortion`` is finished.
    """
    outputs = _transformer_outputs(out_dir, distortion, images)
    if not outputs:
        return None
    rows = [(f"{distortion} test digits", images)] + [(f"{LABELS[m]}: transformer output", o)
                                                       for m, o in outputs.items()]
    figure = experiments._figure(10, 1.3 * len(rows) + 0.4)
    for position, (title, picture) in enumerate(rows):
        axes = figure.add_subplot(len(rows), 1, position + 1)
        axes.imshow(experiments._tile(np.clip(picture, 0, 1), len(picture)), cmap="gray_r", vmin=0, vmax=1)
        axes.set_title(title, fontsize=10)
        axes.axis("off")
    figure.suptitle(f"{distortion} MNIST: distorted test digits and the spatial transformers' output")
    figure.tight_layout()
    path = os.path.join(out_dir, distortion, FIGURE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path)
    return path


def _figure_digits(config):
    """The first test digits of the fixed distorted test set of ``config`` (as :func:`load_data` makes it)."""
    split = load_mnist(config.mnist_dir)
    test_images = split.test_images[:config.test_limit]
    return distort(test_images, config.distortion, np.random.default_rng(experiments.TEST_SEED))[:FIGURE_DIGITS]


def _have_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


# ------------------------------------------------------------------ running the table


def run_table(mnist_dir, out_dir, distortions=DISTORTIONS, models=tuple(MODELS), progress=None, echo=print,
              **changes):
    """Train the cells ``distortions`` × ``models`` that are not finished; write the table after each.

    Parameters
    ----------
    mnist_dir : str or os.PathLike
        A folder with the four MNIST IDX files (``scripts/build_full_mnist.py``).
    out_dir : str or os.PathLike
        The table's directory; created if needed. Cells live in
        ``out_dir/<distortion>/<model>/``.
    distortions, models : sequence of str
        Which cells to train (the table files also show the cells found
        from earlier calls).
    progress : bool or None
        The per-epoch progress bar (None: only on a terminal).
    echo : callable
        Receives one line per cell and per epoch.
    **changes
        Settings of :class:`Recipe` that differ from :data:`DEFAULT_RECIPE`
        (``epochs``, ``batch_size``, ``lr``, ``momentum``, ``seed``,
        ``train_limit``, ``test_limit``). A table directory keeps the recipe
        it was started with: later calls may leave them out, and must not
        contradict them.

    Returns
    -------
    dict
        The table as written to ``table1.json``.

    Raises
    ------
    ExperimentError
        ``out_dir`` holds a table or a cell of other settings, or cannot be created.
    """
    for distortion in distortions:
        if distortion not in DISTORTIONS:
            raise ValueError(f"distortion must be one of {', '.join(DISTORTIONS)}, got {distortion!r}")
    for model in models:
        if model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    unknown = set(changes) - {field.name for field in dataclasses.fields(Recipe)}
    if unknown:
        raise TypeError(f"unknown recipe settings: {', '.join(sorted(unknown))}")
    available = available_digits(mnist_dir)          # a wrong --mnist-dir fails before anything is written
    out_dir = experiments._output_directory(out_dir)
    recipe, stored = _settle_recipe(out_dir, mnist_dir, changes)
    digits = _used_digits(available, recipe)
    cells = [(d, m) for d in dict.fromkeys(distortions) for m in dict.fromkeys(models)]
    plan = {}
    for distortion, model in cells:                 # refuse foreign cells before training anything
        config = cell_config(distortion, model, recipe, mnist_dir)
        status, saved, history = _cell_state(out_dir, distortion, model)
        if saved is not None and saved != config:
            changed = ", ".join(f"{k}={getattr(config, k)!r} (checkpoint: {getattr(saved, k)!r})"
                                for k in dataclasses.asdict(config) if getattr(config, k) != getattr(saved, k))
            raise experiments.ExperimentError(f"{cell_directory(out_dir, distortion, model)} holds a run of other "
                                              f"settings: {changed}")
        plan[(distortion, model)] = (config, status, history)
    if not stored:
        _store_recipe(out_dir, mnist_dir, recipe)
    machine = experiments.machine_info()
    errors, _ = _write_results(out_dir, recipe, digits, cells, machine)
    plots = _have_matplotlib()
    if not plots:
        echo("matplotlib is not installed: no figures (pip install 'stn-numba[demo]')")
    for number, ((distortion, model), (config, status, history)) in enumerate(plan.items(), 1):
        where = f"[{number}/{len(plan)}] {distortion} {model}"
        if status == "done":
            echo(f"{where}: finished earlier, test error {history[-1]['test_error_pct']:.2f}%")
            continue
        echo(f"{where}: " + (f"resuming after epoch {len(history)} of {config.epochs}" if status == "partial"
                             else f"training {config.epochs} epoch{'s' if config.epochs != 1 else ''}")
             + f" in {cell_directory(out_dir, distortion, model)}")
        run = experiments.train(config, cell_directory(out_dir, distortion, model), resume=status == "partial",
                                progress=progress, echo=echo)
        if plots and config.model == "st-cnn":
            plot_distortion(out_dir, distortion, run.data.test_images[:FIGURE_DIGITS])
        machine = dict(experiments.machine_info(), load_average_1min_at_end=experiments._load_average())
        errors, _ = _write_results(out_dir, recipe, digits, cells, machine)
        summary = run.summary
        echo(f"{where}: test error {summary['test_error_pct']:.2f}% (paper {PAPER[distortion][model]}%) after "
             f"{summary['train_seconds']:.0f} s of training; wrote {os.path.join(out_dir, 'table1.md')}")
    missing = [d for d in dict.fromkeys(d for d, _ in cells)    # figures that earlier calls did not leave
               if plots and not os.path.exists(os.path.join(out_dir, d, FIGURE))
               and any(_cell_state(out_dir, d, m)[0] == "done" for m in MODELS if MODELS[m][0] == "st-cnn")]
    for distortion in missing:
        plot_distortion(out_dir, distortion, _figure_digits(cell_config(distortion, "st-cnn-aff", recipe, mnist_dir)))
    if missing:
        errors, _ = _write_results(out_dir, recipe, digits, cells, machine)
    return errors
