"""The CUDA backend's kernel table (`stn_numba._kernels.Kernels`): the host-side launchers."""

from .._kernels import from_modules
from . import fields, grids, padding, sampling

# The plain backwards add into grad_input atomically, in an order that varies
# from run to run; the deterministic ones count, sort and gather each input
# pixel's terms instead.
KERNELS = from_modules(
    grids, sampling, padding, fields,
    grid_sample_backward_deterministic={2: sampling.grid_sample_2d_backward_deterministic,
                                        3: sampling.grid_sample_3d_backward_deterministic},
    affine_grid_sample_backward_deterministic={2: sampling.affine_grid_sample_2d_backward_deterministic,
                                               3: sampling.affine_grid_sample_3d_backward_deterministic},
    warp_backward_deterministic={2: fields.warp_2d_backward_deterministic,
                                 3: fields.warp_3d_backward_deterministic},
)
