"""The spatial transformer layer of Jaderberg et al., "Spatial Transformer Networks" (NeurIPS 2015).

A spatial transformer has three parts (§3 of the paper), and so does
:class:`SpatialTransformer`:

1. the *localisation network*, any :class:`~stn_numba.nn.Module` given by the
   user, followed by a final :class:`~stn_numba.nn.Linear` layer (the
   *regressor*) that outputs the transformation parameters θ. The regressor
   starts at zero weights and the identity transform as its bias, so an
   untrained layer passes its input through unchanged (§4.1 of the paper);
2. the *grid generator* of the chosen transform family, one of the graph ops
   of :mod:`stn_numba.nn.functional`;
3. the *sampler*, :func:`stn_numba.nn.functional.grid_sample`.

For the affine family steps 2 and 3 run as one op,
:func:`stn_numba.nn.functional.affine_grid_sample`, which never builds the grid.

Transform families and their parameters θ (one row per image):

============  =======  ==============================================  ===================
family        size     meaning                                         identity
============  =======  ==============================================  ===================
affine        6        the 2×3 matrix A_θ, row by row                  (1, 0, 0, 0, 1, 0)
attention     3        (s, tx, ty): isotropic scale and translation    (1, 0, 0)
similarity    4        (s, angle, tx, ty), the angle in radians        (1, 0, 0, 0)
projective    8        the 3×3 homography row by row, h33 fixed to 1   (1, 0, 0, 0, 1, 0, 0, 0)
tps           2K       where the K control points sit in the input     the control points
============  =======  ==============================================  ===================
"""

import numbers

import numpy as np

from .. import _checks
from .._families import GRID_FAMILIES
from ..tensor import _FLOAT_DTYPES, Tensor, no_grad
from . import functional as F
from .modules import Linear, Module

__all__ = ["SpatialTransformer", "TRANSFORMS"]


# The transform families by name: those of the grid generators.
TRANSFORMS = GRID_FAMILIES


def _output_size(value):
    """None, or ``value`` as a (height, width) pair of positive ints."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, numbers.Integral) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, numbers.Integral) and v >= 1 for v in pair):
        raise ValueError(f"output_size must be None, a positive int or a (height, width) pair of "
                         f"positive ints, got {value!r}")
    return tuple(int(v) for v in pair)


def _flat_features(localisation, input_size, dtype):
    """The number of features ``localisation`` makes of one (C, H, W) input, found by a dry run.

    The dry run is in evaluation mode (no batch statistics, no dropout) and
    records no graph; the modules' training flags are restored afterwards.
    """
    try:
        shape = (1,) + tuple(int(s) for s in input_size)
    except TypeError:
        raise TypeError(f"input_size must be a (channels, height, width) tuple, got {input_size!r}") from None
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f"input_size must be (channels, height, width) of positive ints, got {input_size!r}")
    modes = [(module, module.training) for module in localisation.modules()]
    localisation.eval()
    try:
        with no_grad():
            features = localisation(Tensor(np.zeros(shape, dtype)))
    finally:
        for module, training in modes:
            object.__setattr__(module, "training", training)
    return int(np.prod(features.shape[1:]))


class SpatialTransformer(Module):
    """A spatial transformer: localisation network → θ → grid generator → sampler.

    Jaderberg et al. (2015), §3. The layer regresses one set of transform
    parameters θ per image with ``localisation`` and a final linear layer
    (``self.regressor``, initialised to the identity transform: zero weights,
    identity bias), builds the sampling grid of the ``transform`` family and
    samples the input there with :func:`stn_numba.nn.functional.grid_sample`.
    Every step is differentiable, so the whole layer trains by
    backpropagation with the rest of a model.

    Parameters
    ----------
    localisation : Module
        Maps the input (N, C, H, W) to features (N, ...), flattened to
        (N, in_features) before the regressor. To run it on a downsampled
        input, as the paper does, begin it with ``AvgPool2d(2)`` (for a 2×
        reduction this equals bilinear downsampling with
        ``align_corners=False``).
    transform : {"affine", "attention", "similarity", "projective", "tps"}
        The transform family, see the module docstring.
    output_size : int or (int, int), optional
        (height, width) of the output; None (default) keeps the input's. It
        may be smaller than the input: the transformer then downsamples, as
        in §4.1 of the paper.
    in_features : int, optional
        The number of features ``localisation`` makes of one image. Give it,
        or give ``input_size`` and it is found by a dry run.
    input_size : (int, int, int), optional
        (C, H, W) of one input image, used only to find ``in_features``.
    mode, padding_mode, align_corners, fill_value
        As in :func:`stn_numba.nn.functional.grid_sample` (and the grid op).
    control_points : (int, int) or array_like, optional
        The thin-plate spline's control points, see
        :func:`stn_numba.tps_control_points` (only for ``"tps"``).
    dtype : {None, float32, float64}, optional
        The regressor's dtype; None takes that of ``localisation``'s first
        parameter, or float32.

    Attributes
    ----------
    localisation : Module
    regressor : Linear
        ``in_features`` → the number of parameters of the family.
    num_parameters : int
        The size of θ per image.

    Notes
    -----
    torch has no such layer; the PyTorch spatial transformer tutorial builds
    the affine case by hand (``fc_loc`` + ``affine_grid`` + ``grid_sample``),
    which is the same computation as ``transform="affine"``.

    Examples
    --------
    >>> import numpy as np
    >>> import stn_numba.nn as nn
    >>> from stn_numba.tensor import Tensor
    >>> localisation = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU())
    >>> st = nn.SpatialTransformer(localisation, "similarity", in_features=8)
    >>> x = Tensor(np.random.default_rng(0).random((2, 1, 8, 8), np.float32))
    >>> bool(np.allclose(st(x).data, x.data, atol=1e-5))   # identity at initialisation
    True
    """

    def __init__(self, localisation, transform="affine", output_size=None, in_features=None, *,
                 input_size=None, mode="bilinear", padding_mode="zeros", align_corners=False, fill_value=0.0,
                 control_points=(4, 4), dtype=None):
        super().__init__()
        if not isinstance(localisation, Module):
            raise TypeError(f"localisation must be a stn_numba.nn.Module, got {type(localisation).__name__}")
        if transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, got {transform!r}")
        _checks.mode(mode)
        self.fill_value = _checks.fill_value(fill_value, _checks.padding_mode(padding_mode))
        self.align_corners = _checks.align_corners(align_corners)
        self.transform, self.mode, self.padding_mode = transform, mode, padding_mode
        self.output_size = _output_size(output_size)
        self.control_points = control_points
        identity = TRANSFORMS[transform].identity(control_points)
        self._parameter_shape = identity.shape
        identity = identity.ravel()
        if transform == "projective":  # the paper's 8 parameters: h33 is fixed to 1
            identity = identity[:-1]
        if dtype is None:
            first = next(localisation.parameters(), None)
            dtype = np.float32 if first is None else first.dtype
        dtype = np.dtype(dtype)
        if dtype not in _FLOAT_DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        if in_features is None:
            if input_size is None:
                raise ValueError("give in_features (the number of features localisation makes of one "
                                 "image) or input_size (C, H, W) to find it by a dry run")
            in_features = _flat_features(localisation, input_size, dtype)
        if not isinstance(in_features, numbers.Integral) or in_features < 1:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        self.localisation = localisation
        self.num_parameters = len(identity)
        self.regressor = Linear(in_features, self.num_parameters, dtype=dtype)
        self.regressor.weight.data[...] = 0
        self.regressor.bias.data[...] = identity

    def localise(self, input):
        """The transform parameters θ of each image, shape (N, ``num_parameters``)."""
        features = self.localisation(input)
        if features.ndim != 2:
            features = features.flatten(1)
        if features.shape[1] != self.regressor.in_features:
            raise ValueError(f"localisation made {features.shape[1]} features per image of input "
                             f"{input.shape}, but the regressor expects in_features="
                             f"{self.regressor.in_features}")
        return self.regressor(features)

    def _family_parameters(self, theta):
        """θ (N, ``num_parameters``) in the shape of the family's grid generator."""
        if self.transform == "projective":  # h33 is fixed to 1, not regressed
            theta = F.concat([theta, Tensor(np.ones((theta.shape[0], 1), theta.dtype))], 1)
        # the length of axis 1 is left to the grid generator, whose check names the shape it expects
        return theta.reshape((theta.shape[0], -1) + self._parameter_shape[1:])

    def grid(self, theta, size):
        """The sampling grid (N, H, W, 2) of parameters ``theta`` for an output of ``size`` (N, C, H, W)."""
        options = TRANSFORMS[self.transform].options(self.control_points)
        return F._family_grid(self.transform, self._family_parameters(theta), size, self.align_corners, **options)

    def output_shape(self, input_shape):
        """(N, C, H_out, W_out) for an input of shape (N, C, H, W)."""
        n, c, h, w = input_shape
        return (n, c) + (self.output_size or (h, w))

    def forward(self, input):
        if not isinstance(input, Tensor) or input.ndim != 4:
            raise ValueError(f"SpatialTransformer expects a 4-D Tensor (N, C, H, W), got "
                             f"{getattr(input, 'shape', type(input).__name__)}")
        theta = self.localise(input)
        size = self.output_shape(input.shape)
        if self.transform == "affine":  # fused: the grid is never built
            return F.affine_grid_sample(input, self._family_parameters(theta), size, self.mode, self.padding_mode,
                                        self.align_corners, fill_value=self.fill_value)
        return F.grid_sample(input, self.grid(theta, size), self.mode, self.padding_mode, self.align_corners,
                             fill_value=self.fill_value)
