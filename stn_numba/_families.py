"""The transform families of the grid generators, in one table.

The paper's transformations (Jaderberg et al., 2015, §3.2) each have a grid
generator in :mod:`stn_numba.grids` and its backward. :data:`GRID_FAMILIES`
lists them, by name, with what a caller needs to use any family alike: the
graph ops of :mod:`stn_numba.nn.functional`, :class:`stn_numba.nn.SpatialTransformer`
(whose ``transform`` choices are these names, in this order) and the tests
take their families from it.
"""

import dataclasses
from collections.abc import Callable

import numpy as np

from . import grids


@dataclasses.dataclass(frozen=True)
class GridFamily:
    """One transform family: its grid generator, the generator's backward and its identity.

    Attributes
    ----------
    name : str
        ``grid`` is :mod:`stn_numba.grids`' ``{name}_grid``.
    grid : callable
        ``grid(params, size, align_corners=False, **options)``.
    grid_backward : callable
        Its gradient with respect to ``params``; call it through :meth:`backward`.
    parameter_name : str
        ``grid``'s name for ``params`` (in error messages).
    identity : callable
        ``identity(control_points)``: one image's parameters of the identity
        transform (2-D), float64, in the shape ``grid`` takes per image.
    backward_takes_params : bool
        Whether ``grid_backward`` takes ``params`` after ``grad_grid`` (the
        families whose grid is not linear in them).
    takes_control_points : bool
        Whether ``grid`` takes ``control_points`` (the thin-plate spline).
    """

    name: str
    grid: Callable
    grid_backward: Callable
    parameter_name: str
    identity: Callable
    backward_takes_params: bool = False
    takes_control_points: bool = False

    def options(self, control_points):
        """The keyword options of ``grid`` and ``grid_backward`` beyond ``align_corners``."""
        return {"control_points": control_points} if self.takes_control_points else {}

    def backward(self, grad_grid, params, size, align_corners=False, **options):
        """``grid_backward`` at ``grad_grid``, given ``params`` whether it needs them or not."""
        leading = (params,) if self.backward_takes_params else ()
        return self.grid_backward(grad_grid, *leading, size, align_corners=align_corners, **options)


GRID_FAMILIES = {family.name: family for family in (
    GridFamily("affine", grids.affine_grid, grids.affine_grid_backward, "theta",
               lambda control_points: np.eye(2, 3)),
    GridFamily("attention", grids.attention_grid, grids.attention_grid_backward, "params",
               lambda control_points: np.array([1.0, 0, 0])),
    GridFamily("similarity", grids.similarity_grid, grids.similarity_grid_backward, "params",
               lambda control_points: np.array([1.0, 0, 0, 0]), backward_takes_params=True),
    GridFamily("projective", grids.projective_grid, grids.projective_grid_backward, "theta",
               lambda control_points: np.eye(3), backward_takes_params=True),
    GridFamily("tps", grids.tps_grid, grids.tps_grid_backward, "theta", grids.tps_control_points,
               takes_control_points=True),
)}
