"""Torch-like neural-network layers on the :mod:`stn_numba.tensor` tape.

Use ``import stn_numba.nn as nn`` and ``import stn_numba.nn.functional as F``
as you would with torch; see :mod:`stn_numba.nn.modules` for the layers and
:mod:`stn_numba.nn.functional` for the operations.
"""

from . import functional
from .modules import (
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Dropout2d,
    Flatten,
    Identity,
    IntegrateVelocity,
    Linear,
    MaxPool2d,
    Module,
    Parameter,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    Warp,
)
from .transformer import SpatialTransformer

__all__ = [
    "functional",
    "AvgPool2d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Dropout2d",
    "Flatten",
    "Identity",
    "IntegrateVelocity",
    "Linear",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "Warp",
    "SpatialTransformer",
]
