"""MNIST data for the experiments: the bundled subset, IDX files, the paper's distortions."""

from .distortions import DISTORTIONS, distort
from .mnist import (
    MnistSplit,
    load_bundled,
    load_mnist,
    read_bundled,
    read_idx,
    read_mnist_idx_dir,
    stratified_split,
    to_float_images,
)

__all__ = [
    "DISTORTIONS",
    "distort",
    "MnistSplit",
    "load_bundled",
    "load_mnist",
    "read_bundled",
    "read_idx",
    "read_mnist_idx_dir",
    "stratified_split",
    "to_float_images",
]
