"""The CPU backend's kernel table (`stn_numba._kernels.Kernels`)."""

from .._kernels import from_modules
from . import fields, grids, padding, sampling

# Every CPU backward sums in an order fixed by the shapes (private buffers
# are added in chunk order), so the deterministic backwards are the backwards.
KERNELS = from_modules(
    grids, sampling, padding, fields,
    grid_sample_backward_deterministic={2: sampling.grid_sample_2d_backward, 3: sampling.grid_sample_3d_backward},
    affine_grid_sample_backward_deterministic={2: sampling.affine_grid_sample_2d_backward,
                                               3: sampling.affine_grid_sample_3d_backward},
    warp_backward_deterministic={2: fields.warp_2d_backward, 3: fields.warp_3d_backward},
)
