"""The distorted-MNIST experiment of Jaderberg et al., "Spatial Transformer Networks" (2015), §4.1.

A plain CNN and an ST-CNN (the same CNN after a spatial transformer) learn to
classify digits under one of the paper's distortions (:mod:`stn_numba.data`).
This module holds the models, the training loop (checkpoints every epoch,
``--resume``, a JSON-lines metrics log), evaluation and the figures; the
``stn-numba`` command (:mod:`stn_numba.cli`) is a thin layer over it.

Training draws fresh distortions of the training digits every epoch from one
generator seeded by ``seed``; the test set is distorted once with the fixed
generator ``TEST_SEED``, so every run and every model sees the same test
images. Models are float32.
"""

import dataclasses
import json
import os
import platform
import time
from collections import OrderedDict

import numpy as np
from tqdm.auto import tqdm

from . import io, nn, optim
from ._memory import reuse_freed_memory
from .data import DISTORTIONS, distort, load_mnist
from .nn import functional as F
from .nn.transformer import TRANSFORMS
from .tensor import Tensor, default_generator, manual_seed, no_grad

__all__ = [
    "Config", "MODELS", "TEST_SEED", "build_model", "load_data", "train", "resume_config", "evaluate_checkpoint",
    "run_demo", "ExperimentError",
]

MODELS = ("cnn", "st-cnn")
TEST_SEED = 20151205          # the test set's distortions: fixed across runs, seeds and models
NUM_CLASSES = 10
CHECKPOINT = "checkpoint.npz"
METRICS = "metrics.jsonl"
_FORMAT = "stn-numba-train-1"
ST_OUTPUT_HW = (28, 28)
# A smaller step for the localisation net and regressor keeps the predicted
# transforms from swinging while the classifier is still learning; on RTS it
# gave a lower test error than the shared rate (see README).
TRANSFORMER_LR_FACTOR = 0.1


class ExperimentError(Exception):
    """A run that cannot go on: nothing to resume, a foreign checkpoint, data the model doesn't fit, no matplotlib."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a training run (stored in its checkpoint).

    Parameters
    ----------
    distortion : {"R", "RTS", "P", "E", "TC"}
    model : {"cnn", "st-cnn"}
    transform : {"affine", "attention", "similarity", "projective", "tps"}
        The spatial transformer's family (ST-CNN only).
    epochs, batch_size : int
    lr, momentum : float
        SGD with momentum; the learning rate (scaled by
        :data:`TRANSFORMER_LR_FACTOR` for the spatial transformer) follows a
        cosine schedule over ``epochs``, stepped once per epoch.
    seed : int
        Seeds the initialisation, the shuffling and the training distortions.
    train_limit, test_limit : int, optional
        Use only the first digits of each split (quick checks); None for all.
    mnist_dir : str, optional
        A folder of MNIST IDX files; None for the bundled 4,000/1,000 subset.
    """

    distortion: str = "RTS"
    model: str = "st-cnn"
    transform: str = "affine"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.02
    momentum: float = 0.9
    seed: int = 0
    train_limit: int | None = None
    test_limit: int | None = None
    mnist_dir: str | None = None

    def __post_init__(self):
        choices = {"distortion": tuple(DISTORTIONS), "model": MODELS, "transform": tuple(TRANSFORMS)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not self.lr > 0 or not 0 <= self.momentum < 1:
            raise ValueError(f"lr must be > 0 and momentum in [0, 1), got lr={self.lr!r}, "
                             f"momentum={self.momentum!r}")

    def to_json(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text):
        return cls(**json.loads(text))


# ------------------------------------------------------------------ models


def classifier(image_hw, library=nn):
    """conv 9×9 (32) → max-pool 2 → ReLU → conv 7×7 (32) → max-pool 2 → ReLU → linear 10.

    Built with ``library``: `stn_numba.nn`, or ``torch.nn``, which has the
    same names (``benchmarks/bench_train_step.py`` times both).
    """
    height, width = (((size - 8) // 2 - 6) // 2 for size in image_hw)
    return library.Sequential(
        library.Conv2d(1, 32, 9), library.MaxPool2d(2), library.ReLU(),
        library.Conv2d(32, 32, 7), library.MaxPool2d(2), library.ReLU(),
        library.Flatten(), library.Linear(32 * height * width, NUM_CLASSES))


def _localisation(image_hw):
    """Localisation net on the 2× downsampled input.

    conv 5×5 (20) → max-pool 2 → ReLU → conv 5×5 (20) → ReLU → linear 50 → ReLU.
    """
    height, width = ((size // 2 - 4) // 2 - 4 for size in image_hw)
    return nn.Sequential(
        nn.AvgPool2d(2),
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.ReLU(),
        nn.Conv2d(20, 20, 5), nn.ReLU(),
        nn.Flatten(), nn.Linear(20 * height * width, 50), nn.ReLU())


def build_model(config, image_hw):
    """The CNN or ST-CNN of ``config`` for single-channel images of size ``image_hw``.

    Both use the same classifier (module ``classifier``). The ST-CNN puts a
    spatial transformer (module ``transformer``) in front of it, whose
    localisation network works on the 2× downsampled input and ends in 50
    features, from which the regressor (identity at initialisation) predicts
    θ. The transformer's output is a 28×28 image, the size of an MNIST digit,
    whatever the canvas: it learns to undo the distortion and to crop the
    digit (on the 42×42 RTS canvas it downsamples, as the paper's
    transformers do). Parameters come from the generator that
    :func:`stn_numba.tensor.manual_seed` set.
    """
    modules = OrderedDict()
    if config.model == "st-cnn":
        modules["transformer"] = nn.SpatialTransformer(
            _localisation(image_hw), config.transform, output_size=ST_OUTPUT_HW, in_features=50)
        image_hw = ST_OUTPUT_HW
    modules["classifier"] = classifier(image_hw)
    return nn.Sequential(modules)


def _optimizer(model, config):
    """SGD with momentum; the transformer's learning rate is scaled by :data:`TRANSFORMER_LR_FACTOR`."""
    groups = [{"params": list(model.classifier.parameters())}]
    if "transformer" in model._modules:
        groups.append({"params": list(model.transformer.parameters()), "lr": config.lr * TRANSFORMER_LR_FACTOR})
    return optim.SGD(groups, lr=config.lr, momentum=config.momentum)


def count_parameters(model):
    return int(sum(p.data.size for p in model.parameters()))


# ------------------------------------------------------------------ data and evaluation


@dataclasses.dataclass
class Data:
    """The digits of a run: raw training digits (distorted afresh each epoch) and the fixed test set."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def image_hw(self):
        return tuple(self.test_images.shape[2:])


def load_data(config, distortion=None):
    """Load the digits of ``config`` and distort the test set with the fixed generator :data:`TEST_SEED`."""
    split = load_mnist(config.mnist_dir)
    test_images = split.test_images[:config.test_limit]
    return Data(split.train_images[:config.train_limit], split.train_labels[:config.train_limit],
                distort(test_images, distortion or config.distortion, np.random.default_rng(TEST_SEED)),
                split.test_labels[:config.test_limit])


def _batches(count, batch_size):
    for start in range(0, count, batch_size):
        yield slice(start, min(start + batch_size, count))


def evaluate(model, images, labels, batch_size=250):
    """Mean cross-entropy and error rate (%) of ``model`` on ``images``, in evaluation mode."""
    model.eval()
    loss, wrong = 0.0, 0
    with no_grad():
        for batch in _batches(len(images), batch_size):
            logits = model(Tensor(images[batch]))
            loss += F.cross_entropy(logits, labels[batch], reduction="sum").item()
            wrong += int(np.sum(np.argmax(logits.data, axis=1) != labels[batch]))
    return loss / len(images), 100.0 * wrong / len(images)


# ------------------------------------------------------------------ training


@dataclasses.dataclass
class Run:
    """The outcome of :func:`train`: the trained model, its data and per-epoch metrics."""

    config: Config
    model: nn.Module
    data: Data
    history: list
    compile_seconds: float = 0.0

    @property
    def summary(self):
        last = self.history[-1] if self.history else {}
        return {
            "test_error_pct": last.get("test_error_pct"),
            "test_loss": last.get("test_loss"),
            "compile_seconds": round(self.compile_seconds, 2),
            "train_seconds": round(sum(r["train_seconds"] for r in self.history), 2),
            "train_cpu_seconds": round(sum(r["train_cpu_seconds"] for r in self.history), 2),
            "eval_seconds": round(sum(r["eval_seconds"] for r in self.history), 2),
            "images_per_second": round(sum(r["images"] for r in self.history)
                                       / max(sum(r["train_seconds"] for r in self.history), 1e-9), 1),
            "params": count_parameters(self.model),
            "epochs": len(self.history),
        }


def _generator_state(generator):
    return np.array(json.dumps(generator.bit_generator.state))


def _restore_generator(generator, saved):
    generator.bit_generator.state = json.loads(str(saved))


def _write_atomically(path, text):
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _output_directory(path):
    """Create ``path`` if needed; an ExperimentError naming it if that fails."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ExperimentError(f"cannot use {path} as the output directory: it is a file")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise ExperimentError(f"cannot use {path} as the output directory: {error.strerror}") from None
    return path


def read_checkpoint(path):
    """Load a training checkpoint; return ``(state, config)``.

    Raises
    ------
    FileNotFoundError, ValueError
        The file is missing or not a readable ``.npz`` (see :func:`stn_numba.io.load`).
    ExperimentError
        The file is a checkpoint, but not one written by :func:`train`.
    """
    state = io.load(path)
    if str(state.get("format", "")) != _FORMAT:
        raise ExperimentError(f"{path} is not a stn-numba training checkpoint (no '{_FORMAT}' format tag)")
    return state, Config.from_json(str(state["config"]))


def _checkpoint_to_resume(out_dir):
    path = os.path.join(os.fspath(out_dir), CHECKPOINT)
    if not os.path.exists(path):
        raise ExperimentError(f"nothing to resume: {path} does not exist")
    return read_checkpoint(path)


def resume_config(out_dir, **changes):
    """The config of the run checkpointed in ``out_dir``, with ``changes``.

    :func:`train` refuses to resume with changes that differ from the checkpoint's settings.
    """
    return dataclasses.replace(_checkpoint_to_resume(out_dir)[1], **changes)


def _epoch_line(config, record):
    return (f"{config.model:>6} epoch {record['epoch']:>3}/{config.epochs}  "
            f"loss {record['train_loss']:.4f}  train error {record['train_error_pct']:5.2f}%  "
            f"test error {record['test_error_pct']:5.2f}%  {record['images_per_second']:6.0f} img/s  "
            f"{record['train_seconds']:5.1f} s")


def _train_epoch(model, optimizer, images, labels, batch_size, rng, bar):
    """One pass over ``images`` in a random order; returns (mean loss, error %)."""
    model.train()
    order = rng.permutation(len(images))
    loss_sum, wrong, seen = 0.0, 0, 0
    for batch in _batches(len(images), batch_size):
        index = order[batch]
        targets = labels[index]
        logits = model(Tensor(images[index]))
        loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(index)
        wrong += int(np.sum(np.argmax(logits.data, axis=1) != targets))
        seen += len(index)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100.0 - 100.0 * wrong / seen:.1f}%", refresh=False)
        bar.update(len(index))
    return loss_sum / seen, 100.0 * wrong / seen


def train(config, out_dir, *, resume=False, overwrite=False, progress=None, echo=print):
    """Train the model of ``config``, checkpointing into ``out_dir`` after every epoch.

    Each epoch distorts the training digits afresh, runs SGD over them in a
    random order, evaluates the fixed test set, then writes
    ``out_dir/checkpoint.npz`` (model, optimizer, schedule, both random
    generators and the metrics so far; atomic, no pickle, see
    :mod:`stn_numba.io`) and appends one line to ``out_dir/metrics.jsonl``.
    On Linux it first has glibc keep freed memory for reuse
    (:func:`stn_numba._memory.reuse_freed_memory`), for the rest of the process.

    Parameters
    ----------
    config : Config
    out_dir : str or os.PathLike
        Created if needed.
    resume : bool
        Continue from ``out_dir/checkpoint.npz``, whose config must equal
        ``config``. A resumed run ends exactly as an uninterrupted one.
    overwrite : bool
        Start afresh even if ``out_dir`` holds a checkpoint (else an error).
    progress : bool or None
        Show a tqdm bar per epoch (loss, accuracy, images/s); None shows it
        only on a terminal.
    echo : callable
        Receives one summary line per epoch.

    Returns
    -------
    Run

    Raises
    ------
    ExperimentError
        Nothing to resume, a checkpoint of another configuration, or an
        existing checkpoint without ``resume`` or ``overwrite``.
        Also when ``out_dir`` cannot be created.
    OSError
        ``out_dir`` cannot be written.
    """
    out_dir = _output_directory(out_dir)
    checkpoint_path = os.path.join(out_dir, CHECKPOINT)
    metrics_path = os.path.join(out_dir, METRICS)
    if os.path.exists(checkpoint_path) and not (resume or overwrite):
        raise ExperimentError(f"{out_dir} already holds a checkpoint; use --resume to continue it "
                              f"or choose another output directory")
    data = load_data(config)
    manual_seed(config.seed)
    model = build_model(config, data.image_hw)
    optimizer = _optimizer(model, config)
    scheduler = optim.CosineAnnealingLR(optimizer, T_max=config.epochs)
    rng = np.random.default_rng(config.seed)
    history = []
    if resume:
        state, saved = _checkpoint_to_resume(out_dir)
        if saved != config:
            changed = ", ".join(f"{k}={getattr(config, k)!r} (checkpoint: {getattr(saved, k)!r})"
                                for k in dataclasses.asdict(config) if getattr(config, k) != getattr(saved, k))
            raise ExperimentError(f"cannot resume {checkpoint_path} with other settings: {changed}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _restore_generator(rng, state["rng"]["data"])
        _restore_generator(default_generator(), state["rng"]["init"])
        history = json.loads(str(state["history"]))
    _write_atomically(metrics_path, "".join(json.dumps(r) + "\n" for r in history))

    reuse_freed_memory()
    compile_seconds = _compile_kernels(config, data)
    for epoch in range(len(history) + 1, config.epochs + 1):
        history.append(_epoch(epoch, model, optimizer, scheduler, data, config, rng, progress))
        io.save({"format": _FORMAT, "config": config.to_json(), "epoch": epoch,
                 "image_hw": np.array(data.image_hw), "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng": {"data": _generator_state(rng), "init": _generator_state(default_generator())},
                 "history": json.dumps(history)}, checkpoint_path)
        with open(metrics_path, "a") as file:
            file.write(json.dumps(history[-1]) + "\n")
        echo(_epoch_line(config, history[-1]))
    return Run(config, model, data, history, compile_seconds)


def _compile_kernels(config, data):
    """One training step and one evaluation of a throwaway model on a batch of test digits; returns its seconds.

    Numba compiles the kernels a run uses on their first call (or loads them
    from its cache, after the first run), so without this the first epoch's
    time would include compilation: on the demo's first run, 15 s for the
    CNN's convolution kernels. A whole batch, because small work runs on
    serial kernels and a batch on parallel ones: with two digits the
    ST-CNN's first epoch still compiled its sampler's (18.6 s of a 57 s
    run). The run's own model, optimizer and random generators are
    untouched.
    """
    started = time.perf_counter()
    saved = _generator_state(default_generator())
    model = build_model(config, data.image_hw)
    images, labels = data.test_images[:config.batch_size], data.test_labels[:config.batch_size]
    model.train()
    F.cross_entropy(model(Tensor(images)), labels).backward()
    _optimizer(model, config).step()
    evaluate(model, images, labels)
    _restore_generator(default_generator(), saved)
    return time.perf_counter() - started


def _epoch(epoch, model, optimizer, scheduler, data, config, rng, progress):
    """Train one epoch on fresh distortions, step the schedule, evaluate; return the epoch's record."""
    lr = optimizer.param_groups[0]["lr"]
    images = distort(data.train_images, config.distortion, rng)
    with tqdm(total=len(images), unit="img", desc=f"{config.model} epoch {epoch}/{config.epochs}",
              disable=None if progress is None else not progress, leave=False) as bar:
        started, cpu_started = time.perf_counter(), time.process_time()
        train_loss, train_error = _train_epoch(model, optimizer, images, data.train_labels,
                                               config.batch_size, rng, bar)
        train_seconds = time.perf_counter() - started
        train_cpu_seconds = time.process_time() - cpu_started
    scheduler.step()
    started = time.perf_counter()
    test_loss, test_error = evaluate(model, data.test_images, data.test_labels)
    return {"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_error_pct": train_error,
            "test_loss": test_loss, "test_error_pct": test_error, "images": len(images),
            "train_seconds": round(train_seconds, 3), "train_cpu_seconds": round(train_cpu_seconds, 3),
            "eval_seconds": round(time.perf_counter() - started, 3),
            "images_per_second": round(len(images) / train_seconds, 1)}


def evaluate_checkpoint(path, distortion=None, mnist_dir=None):
    """Test error of a checkpoint's model on the fixed test set of ``distortion`` (default: its own).

    Returns
    -------
    dict
        ``distortion``, ``test_error_pct``, ``test_loss``, ``test_digits``,
        ``epoch`` and the checkpoint's ``config``.
    """
    state, config = read_checkpoint(path)
    distortion = distortion or config.distortion
    config = dataclasses.replace(config, mnist_dir=mnist_dir if mnist_dir is not None else config.mnist_dir)
    data = load_data(config, distortion)
    trained_hw = tuple(int(s) for s in state["image_hw"])
    if data.image_hw != trained_hw:
        raise ExperimentError(f"the model of {path} takes {trained_hw[0]}×{trained_hw[1]} images "
                            f"({config.distortion}), but distortion {distortion} makes "
                            f"{data.image_hw[0]}×{data.image_hw[1]} images")
    model = build_model(config, trained_hw)
    model.load_state_dict(state["model"])
    loss, error = evaluate(model, data.test_images, data.test_labels)
    return {"distortion": distortion, "test_error_pct": error, "test_loss": loss,
            "test_digits": len(data.test_labels), "epoch": int(state["epoch"]),
            "config": dataclasses.asdict(config)}


# ------------------------------------------------------------------ the demo


# The recipe of the PyTorch reference run (30 epochs of SGD with a cosine schedule).
DEMO_EPOCHS = 30
QUICK_DIGITS = (300, 200)     # train and test digits of ``demo --quick``


def _load_average():
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine_info():
    """The machine a result was measured on: CPU, threads, versions, load."""
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            cpu = next((line.split(":", 1)[1].strip() for line in file if line.startswith("model name")), cpu)
    except OSError:
        pass
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    return {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(affinity),
        "numba_threads": numba.get_num_threads(),
        "load_average_1min": _load_average(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
    }


def _tile(images, columns, gap=2):
    """Tile (N, 1, H, W) images into one (rows·(H+gap)-gap, columns·(W+gap)-gap) picture with grey gaps."""
    n, _, height, width = images.shape
    rows = -(-n // columns)
    picture = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), 0.3, np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        picture[r * (height + gap):r * (height + gap) + height, c * (width + gap):c * (width + gap) + width] = image[0]
    return picture


def _figure(width, height):
    """A matplotlib Figure on the Agg canvas (no pyplot, so no global backend is touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_transformed(run, path, count=32, columns=8):
    """Save distorted test digits next to what the spatial transformer made of them (the tutorial's figure)."""
    images = run.data.test_images[:count]
    run.model.eval()
    with no_grad():
        transformed = run.model.transformer(Tensor(images)).data
    figure = _figure(10, 1.0 + 4.8 * len(images) / columns / columns)
    for position, (title, picture) in enumerate([("Distorted test digits", images),
                                                 ("After the spatial transformer", transformed)]):
        axes = figure.add_subplot(1, 2, position + 1)
        axes.imshow(_tile(np.clip(picture, 0, 1), columns), cmap="gray_r", vmin=0, vmax=1)
        axes.set_title(title)
        axes.axis("off")
    figure.suptitle(f"ST-CNN ({run.config.transform}) on {run.config.distortion} MNIST")
    figure.tight_layout()
    figure.savefig(path)


def plot_curves(runs, path):
    """Save training loss and test error per epoch of each run."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    figure = _figure(10, 4)
    panels = [("train_loss", "training loss"), ("test_error_pct", "test error (%)")]
    for position, (key, label) in enumerate(panels):
        axes = figure.add_subplot(1, 2, position + 1)
        for name, run in runs.items():
            axes.plot([r["epoch"] for r in run.history], [r[key] for r in run.history], marker=".", label=name)
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.set_yscale("log")
        axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axes.yaxis.set_minor_formatter(NullFormatter())
        axes.grid(True, alpha=0.3)
        axes.legend()
    figure.suptitle(f"{next(iter(runs.values())).config.distortion} MNIST: CNN vs ST-CNN")
    figure.tight_layout()
    figure.savefig(path)


def results_table(report):
    """The demo's results as a fixed-width text table."""
    lines = [f"{'model':<8}{'test error':>12}{'train time':>13}{'img/s':>9}{'params':>10}"]
    for name, result in report["models"].items():
        lines.append(f"{name:<8}{result['test_error_pct']:>11.2f}%{result['train_seconds']:>12.1f}s"
                     f"{result['images_per_second']:>9.0f}{result['params']:>10,}")
    if report["error_reduction_pct"] is not None:
        lines.append(f"the ST-CNN makes {report['error_reduction_pct']:.0f}% fewer test errors than the CNN")
    compiling = ", ".join(f"{name} {result['compile_seconds']:.1f} s" for name, result in report["models"].items())
    lines.append(f"compiling the kernels before training (Numba caches them for later runs): {compiling}")
    return "\n".join(lines)


def run_demo(out_dir, epochs=None, quick=False, progress=None, echo=print):
    """Train a CNN and an ST-CNN on RTS digits; write ``report.json``, figures and checkpoints to ``out_dir``.

    Both models see the same training distortions (same seed) and the same
    fixed test set, from the bundled 4,000 / 1,000 split (``quick``: the
    first 300 / 200 digits and 1 epoch, a smoke run whose numbers mean
    nothing).

    Returns
    -------
    dict
        The report, as written to ``out_dir/report.json``.
    """
    try:
        import matplotlib  # noqa: F401  (fail before training, not after)
    except ImportError:
        raise ExperimentError("the demo draws its figures with matplotlib, which is not installed: "
                              "pip install 'stn-numba[demo]'") from None

    out_dir = _output_directory(out_dir)
    base = Config(distortion="RTS", epochs=epochs or (1 if quick else DEMO_EPOCHS))
    if quick:
        base = dataclasses.replace(base, train_limit=QUICK_DIGITS[0], test_limit=QUICK_DIGITS[1])
    machine = machine_info()
    started = time.perf_counter()
    runs = {model: train(dataclasses.replace(base, model=model), os.path.join(out_dir, model), overwrite=True,
                         progress=progress, echo=echo)
            for model in MODELS}
    cnn_error, st_error = (runs[m].summary["test_error_pct"] for m in MODELS)
    report = {
        "distortion": base.distortion,
        "epochs": base.epochs,
        "seed": base.seed,
        "quick": quick,
        "train_digits": len(runs["cnn"].data.train_labels),
        "test_digits": len(runs["cnn"].data.test_labels),
        "recipe": {"batch_size": base.batch_size, "lr": base.lr, "momentum": base.momentum,
                   "schedule": "cosine", "transform": base.transform},
        "models": {name: dict(run.summary, history=run.history) for name, run in runs.items()},
        "error_reduction_pct": round(100 * (cnn_error - st_error) / cnn_error, 1) if cnn_error else None,
        "total_seconds": None,
        "machine": machine,
    }
    plot_transformed(runs["st-cnn"], os.path.join(out_dir, "transformed.png"))
    plot_curves(runs, os.path.join(out_dir, "curves.png"))
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    machine["load_average_1min_at_end"] = _load_average()
    _write_atomically(os.path.join(out_dir, "report.json"), json.dumps(report, indent=2) + "\n")
    return report
