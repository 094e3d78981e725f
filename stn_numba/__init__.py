"""stn_numba: Numba-accelerated Spatial Transformer Networks for NumPy.

Jaderberg, Simonyan, Zisserman and Kavukcuoglu, "Spatial Transformer
Networks", NeurIPS 2015. The paper's three parts map onto the package:

- the localisation network: :mod:`stn_numba.nn` (with the autodiff tape of
  :mod:`stn_numba.tensor` and the optimisers of :mod:`stn_numba.optim`);
- grid generators: :mod:`stn_numba.grids`;
- samplers: :mod:`stn_numba.sampling`.

The array functions follow ``torch.nn.functional`` names and semantics and
take NumPy arrays (CPU) or GPU arrays (CUDA).
"""

from . import _threading

_threading.load_pip_tbb()  # before Numba picks a threading layer; see _threading

from . import _codegen

_codegen.prefer_full_width_vectors()  # before Numba compiles anything; see _codegen

from .fields import (
    integrate_velocity,
    integrate_velocity_backward,
    jacobian_determinant,
    jacobian_determinant_backward,
    warp,
    warp_backward,
)
from .grids import (
    affine_grid,
    affine_grid_backward,
    attention_grid,
    attention_grid_backward,
    projective_grid,
    projective_grid_backward,
    similarity_grid,
    similarity_grid_backward,
    tps_control_points,
    tps_grid,
    tps_grid_backward,
)
from .sampling import (
    affine_grid_sample,
    affine_grid_sample_backward,
    grid_count,
    grid_count_backward,
    grid_push,
    grid_push_backward,
    grid_sample,
    grid_sample_backward,
)
from .tensor import Tensor, enable_grad, is_grad_enabled, manual_seed, no_grad

__version__ = "0.1.0"

__all__ = [
    "affine_grid",
    "affine_grid_backward",
    "attention_grid",
    "attention_grid_backward",
    "projective_grid",
    "projective_grid_backward",
    "similarity_grid",
    "similarity_grid_backward",
    "tps_control_points",
    "tps_grid",
    "tps_grid_backward",
    "grid_sample",
    "grid_sample_backward",
    "affine_grid_sample",
    "affine_grid_sample_backward",
    "grid_push",
    "grid_push_backward",
    "grid_count",
    "grid_count_backward",
    "jacobian_determinant",
    "jacobian_determinant_backward",
    "warp",
    "warp_backward",
    "integrate_velocity",
    "integrate_velocity_backward",
    "Tensor",
    "enable_grad",
    "is_grad_enabled",
    "manual_seed",
    "no_grad",
]
