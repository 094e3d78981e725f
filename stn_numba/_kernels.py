"""The kernels a backend runs: the contract between the public layer and the backends.

Each backend declares one `Kernels` table (``stn_numba._cpu.kernels.KERNELS``,
``stn_numba._cuda.kernels.KERNELS``) with `from_modules`, which reads the same
names from both backends' ``grids``, ``sampling``, ``padding`` and ``fields``
modules: a CPU kernel and its CUDA twin share a name and arguments (the CUDA
launcher adds ``stream``). The public functions take a kernel from their
backend's table by op, and by the number of spatial dimensions where an op has
a 2-D and a 3-D kernel. The ``*_deterministic`` entries are the backwards
whose sums run in an order fixed by the shapes; each backend says which
kernels those are.
"""

import dataclasses
from typing import Callable, Mapping

BySpatialDims = Mapping[int, Callable]  # 2 and 3 -> the kernel for that many spatial dimensions


@dataclasses.dataclass(frozen=True)
class Kernels:
    """Every kernel of a backend, by op (see the kernel table of CONTRIBUTING.md)."""

    # grids
    affine_grid: BySpatialDims
    affine_grid_backward: BySpatialDims
    projective_grid: Callable
    projective_grid_backward: Callable
    tps_grid: Callable
    tps_grid_backward: Callable
    attention_to_affine: Callable
    attention_to_affine_backward: Callable
    similarity_to_affine: Callable
    similarity_to_affine_backward: Callable
    # samplers
    grid_sample: BySpatialDims
    grid_sample_backward: BySpatialDims
    grid_sample_backward_deterministic: BySpatialDims
    affine_grid_sample: BySpatialDims
    affine_grid_sample_backward: BySpatialDims
    affine_grid_sample_backward_deterministic: BySpatialDims
    fill_outside: Callable
    fill_outside_backward: Callable
    # displacement fields
    warp: BySpatialDims
    warp_backward: BySpatialDims
    warp_backward_deterministic: BySpatialDims
    jacobian_determinant: BySpatialDims
    jacobian_determinant_backward: BySpatialDims
    field_add: Callable
    field_scale: Callable

    def backward(self, op, spatial, deterministic):
        """The backward kernel of ``op`` ("grid_sample", "affine_grid_sample"
        or "warp") for ``spatial`` dims; with ``deterministic``, the one whose
        sums run in an order fixed by the shapes."""
        return getattr(self, f"{op}_backward_deterministic" if deterministic else f"{op}_backward")[spatial]

    def map(self, wrap):
        """The same table with every kernel ``k`` replaced by ``wrap(k)``."""
        def wrapped(entry):
            return {dims: wrap(kernel) for dims, kernel in entry.items()} if isinstance(entry, Mapping) else wrap(entry)

        return Kernels(**{field.name: wrapped(getattr(self, field.name)) for field in dataclasses.fields(self)})


def from_modules(grids, sampling, padding, fields, *, grid_sample_backward_deterministic,
                 affine_grid_sample_backward_deterministic, warp_backward_deterministic):
    """The `Kernels` of a backend whose kernel modules are ``grids``,
    ``sampling``, ``padding`` and ``fields``, with the given deterministic
    backwards (mappings 2 and 3 -> kernel)."""
    return Kernels(
        affine_grid={2: grids.affine_grid_2d, 3: grids.affine_grid_3d},
        affine_grid_backward={2: grids.affine_grid_2d_backward, 3: grids.affine_grid_3d_backward},
        projective_grid=grids.projective_grid_2d,
        projective_grid_backward=grids.projective_grid_2d_backward,
        tps_grid=grids.tps_grid_2d,
        tps_grid_backward=grids.tps_grid_2d_backward,
        attention_to_affine=grids.attention_to_affine_2d,
        attention_to_affine_backward=grids.attention_to_affine_2d_backward,
        similarity_to_affine=grids.similarity_to_affine_2d,
        similarity_to_affine_backward=grids.similarity_to_affine_2d_backward,
        grid_sample={2: sampling.grid_sample_2d, 3: sampling.grid_sample_3d},
        grid_sample_backward={2: sampling.grid_sample_2d_backward, 3: sampling.grid_sample_3d_backward},
        grid_sample_backward_deterministic=grid_sample_backward_deterministic,
        affine_grid_sample={2: sampling.affine_grid_sample_2d, 3: sampling.affine_grid_sample_3d},
        affine_grid_sample_backward={2: sampling.affine_grid_sample_2d_backward,
                                     3: sampling.affine_grid_sample_3d_backward},
        affine_grid_sample_backward_deterministic=affine_grid_sample_backward_deterministic,
        fill_outside=padding.fill_outside,
        fill_outside_backward=padding.fill_outside_backward,
        warp={2: fields.warp_2d, 3: fields.warp_3d},
        warp_backward={2: fields.warp_2d_backward, 3: fields.warp_3d_backward},
        warp_backward_deterministic=warp_backward_deterministic,
        jacobian_determinant={2: fields.jacobian_determinant_2d, 3: fields.jacobian_determinant_3d},
        jacobian_determinant_backward={2: fields.jacobian_determinant_2d_backward,
                                       3: fields.jacobian_determinant_3d_backward},
        field_add=fields.field_add,
        field_scale=fields.field_scale,
    )
