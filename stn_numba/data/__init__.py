"""MNIST data for the experiments: the bundled subset, IDX files, the paper's distortions."""

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
    "MnistSplit",
    "load_bundled",
    "load_mnist",
    "read_bundled",
    "read_idx",
    "read_mnist_idx_dir",
    "stratified_split",
    "to_float_images",
]
