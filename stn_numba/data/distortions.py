"""The distorted MNIST variants of Jaderberg et al., "Spatial Transformer Networks" (2015).

Section 4.1 and appendix A.1 of the paper describe five distortions of MNIST:

=====  ==================================================================  ======
kind   what happens to each 28×28 digit                                    output
=====  ==================================================================  ======
R      rotated by an angle drawn uniformly from [-90°, +90°]               28×28
RTS    rotated in [-45°, +45°], scaled in [0.7, 1.2], placed at a random   42×42
       location of a 42×42 canvas
P      scaled in [0.75, 1.0], then a projective transform moves each       28×28
       corner by Gaussian noise (σ = 5 pixels)
E      scaled in [0.75, 1.0], then a thin-plate spline moves 16 control    28×28
       points on a 4×4 grid by Gaussian noise (σ = 1.5 pixels)
TC     placed at a random location of a 60×60 canvas, with six 6×6         60×60
       patches of other digits pasted at random locations as clutter
=====  ==================================================================  ======

Every geometric distortion is one call of this package's own grid generator
and :func:`stn_numba.grid_sample` (bilinear, zero padding,
``align_corners=False``), batched, in float32. Randomness comes only from the
``numpy.random.Generator`` passed in, so a training loop draws fresh
distortions every epoch while a test set made from a fixed seed is the same
on every run.

Each distortion is a small frozen dataclass whose fields are its parameters
(the paper's values by default). Calling it on images with a generator draws
the random parameters (:meth:`draw`) and applies them (:meth:`apply`); the two
steps are public so that a distortion with known parameters can be applied
and checked. :func:`distort` picks one by its paper name.

Angles are in degrees, positive counter-clockwise as the image is displayed
(row 0 at the top), as in ``scipy.ndimage.rotate``. Pixel amounts are in
pixels of the 28×28 input.
"""

from dataclasses import dataclass

import numpy as np

from .. import grids, sampling

__all__ = [
    "RandomSimilarity",
    "RandomProjective",
    "RandomElastic",
    "TranslatedCluttered",
    "DISTORTIONS",
    "distort",
    "similarity_theta",
    "corner_homography",
]

# Images warped per grid: bounds the (chunk, H_out, W_out, 2) grid's memory.
CHUNK = 1024
_CORNERS = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])  # (x, y), around the image


def _check_images(images):
    """Return ``images`` as a C-contiguous float32 (N, C, H, W) array."""
    images = np.asarray(images)
    if images.dtype.kind != "f":
        raise TypeError(
            f"images must be floating point (N, C, H, W), got dtype {images.dtype}; "
            "convert uint8 digits with stn_numba.data.to_float_images"
        )
    if images.ndim != 4:
        raise ValueError(f"images must be a 4-D array (N, C, H, W), got shape {images.shape}")
    return np.ascontiguousarray(images, dtype=np.float32)


def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator (e.g. numpy.random.default_rng(0)), got {type(rng).__name__}"
        )
    return rng


def _check_range(low, high, name):
    if not low <= high:
        raise ValueError(f"{name} must satisfy min <= max, got ({low}, {high})")


def _resample(images, grid_of, transforms, out_hw, **options):
    """Warp ``images`` with one grid per image, chunk by chunk.

    ``grid_of`` is a grid generator of :mod:`stn_numba.grids`, called as
    ``grid_of(transforms[chunk], size, align_corners=False, **options)``.
    """
    n, channels = images.shape[:2]
    output = np.empty((n, channels) + tuple(out_hw), dtype=np.float32)
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        grid = grid_of(transforms[start:stop], (stop - start, channels) + tuple(out_hw), align_corners=False,
                       **options)
        output[start:stop] = sampling.grid_sample(
            images[start:stop], grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
    return output


def _half_sizes(hw):
    """Half the (width, height) of an (H, W) size: pixel offsets from the centre per normalised unit."""
    return np.array([hw[1], hw[0]], dtype=np.float64) / 2


def similarity_theta(angles, scales, shifts, in_hw, out_hw):
    """Affine matrices that rotate, scale and move images into an output frame.

    The digit's centre goes to the output's centre plus ``shifts``; the digit
    is rotated by ``angles`` and scaled by ``scales`` about its centre. The
    result is the ``theta`` of :func:`stn_numba.affine_grid` with
    ``align_corners=False``: it maps normalised output coordinates to
    normalised input coordinates (the inverse of the motion of the digit).

    Parameters
    ----------
    angles : array_like, shape (N,)
        Rotation in degrees, positive counter-clockwise as displayed.
    scales : array_like, shape (N,)
        Scale factors (> 0).
    shifts : array_like, shape (N, 2)
        Displacement of the digit's centre in output pixels, (x, y), y down.
    in_hw, out_hw : tuple of int
        Input and output (height, width).

    Returns
    -------
    theta : numpy.ndarray, float32, shape (N, 2, 3)
    """
    radians = np.deg2rad(np.asarray(angles, dtype=np.float64))
    scales = np.asarray(scales, dtype=np.float64)
    shifts = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    cos, sin = np.cos(radians), np.sin(radians)
    # Output pixel offset o (from the centre, y down) reads input offset R o / s: a
    # counter-clockwise turn on screen, since y points down.
    inverse_motion = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2) / scales[:, None, None]
    to_input = inverse_motion / _half_sizes(in_hw)[:, None]
    theta = np.empty((len(radians), 2, 3))
    theta[:, :, :2] = to_input * _half_sizes(out_hw)[None, :]
    theta[:, :, 2] = -np.einsum("nij,nj->ni", to_input, shifts)
    return theta.astype(np.float32)


def corner_homography(corners):
    """Homographies that map quadrilaterals onto the square [-1, 1]².

    Parameters
    ----------
    corners : array_like, shape (N, 4, 2)
        Where the image's corners land in normalised output coordinates,
        (x, y), in the order (-1, -1), (1, -1), (1, 1), (-1, 1).

    Returns
    -------
    numpy.ndarray, float64, shape (N, 3, 3)
        ``H`` with ``H[2, 2] = 1`` such that ``H @ (x, y, 1)`` is proportional
        to the normalised input point that output point (x, y) shows, the
        convention of :func:`stn_numba.projective_grid`.
    """
    corners = np.asarray(corners, dtype=np.float64)
    x, y = corners[..., 0], corners[..., 1]
    u, v = np.broadcast_to(_CORNERS[:, 0], x.shape), np.broadcast_to(_CORNERS[:, 1], x.shape)
    zero, one = np.zeros_like(x), np.ones_like(x)
    # u = (h0 x + h1 y + h2) / (h6 x + h7 y + 1), v likewise with h3..h5: linear in h.
    rows_u = np.stack([x, y, one, zero, zero, zero, -x * u, -y * u], -1)
    rows_v = np.stack([zero, zero, zero, x, y, one, -x * v, -y * v], -1)
    system = np.concatenate([rows_u, rows_v], axis=-2)
    h = np.linalg.solve(system, np.concatenate([u, v], axis=-1)[..., None])[..., 0]
    return np.concatenate([h, np.ones(h.shape[:-1] + (1,))], axis=-1).reshape(-1, 3, 3)


def _is_convex(corners):
    """Whether each (4, 2) quadrilateral turns the same way as the unit square at every corner."""
    edges = np.roll(corners, -1, axis=1) - corners
    following = np.roll(edges, -1, axis=1)
    turns = edges[..., 0] * following[..., 1] - edges[..., 1] * following[..., 0]
    return np.all(turns > 0, axis=1)


def _block(corner, rows, cols):
    """Row and column index arrays (N, rows, cols) of the blocks with top-left ``corner`` (N, 2)."""
    return corner[:, 0, None, None] + np.arange(rows)[:, None], corner[:, 1, None, None] + np.arange(cols)


class _Distortion:
    """Shared driver: check the arguments, draw the parameters, apply them."""

    def __call__(self, images, rng):
        """Distort ``images`` (float32 (N, C, H, W)) with parameters drawn from ``rng``."""
        images = _check_images(images)
        return self.apply(images, self.draw(images, _check_rng(rng)))


@dataclass(frozen=True)
class RandomSimilarity(_Distortion):
    """Random rotation and scaling, and placement in a larger canvas (R and RTS).

    Parameters
    ----------
    max_angle : float
        Angles are drawn uniformly from [-max_angle, max_angle] degrees.
    min_scale, max_scale : float
        Scale factors are drawn uniformly from [min_scale, max_scale].
    canvas_size : int, optional
        Side of the square output; None keeps the input's size. The digit's
        centre is moved uniformly as far as keeps its scaled (unrotated) frame
        inside the canvas, and stays centred when the frame does not fit.
    """

    max_angle: float
    min_scale: float = 1.0
    max_scale: float = 1.0
    canvas_size: int | None = None

    def __post_init__(self):
        _check_range(self.min_scale, self.max_scale, "(min_scale, max_scale)")
        if self.min_scale <= 0:
            raise ValueError(f"min_scale must be positive, got {self.min_scale}")

    def output_hw(self, in_hw):
        return tuple(in_hw) if self.canvas_size is None else (self.canvas_size, self.canvas_size)

    def draw(self, images, rng):
        """Draw ``angle`` (N,), ``scale`` (N,) and ``shift`` (N, 2) for ``images``."""
        n, in_hw = len(images), images.shape[2:]
        out_hw = self.output_hw(in_hw)
        angle = rng.uniform(-self.max_angle, self.max_angle, n)
        scale = rng.uniform(self.min_scale, self.max_scale, n)
        frame = scale[:, None] * np.array([in_hw[1], in_hw[0]])
        margin = np.maximum(np.array([out_hw[1], out_hw[0]]) - frame, 0) / 2
        shift = rng.uniform(-1.0, 1.0, (n, 2)) * margin
        return {"angle": angle, "scale": scale, "shift": shift}

    def apply(self, images, params):
        """Warp ``images`` with the parameters of :meth:`draw`."""
        images = _check_images(images)
        in_hw = images.shape[2:]
        out_hw = self.output_hw(in_hw)
        theta = similarity_theta(params["angle"], params["scale"], params["shift"], in_hw, out_hw)
        return _resample(images, grids.affine_grid, theta, out_hw)


@dataclass(frozen=True)
class RandomProjective(_Distortion):
    """Random scaling, then a projective warp that moves each corner (P).

    The image's corners are first pulled towards the centre by a scale drawn
    from [min_scale, max_scale], then each moved by independent Gaussian noise
    of ``corner_sigma`` pixels per axis; the output shows the image through
    the homography that takes its corners there. Draws whose corners would not
    form a convex quadrilateral (which would fold the image) are redrawn.
    """

    min_scale: float = 0.75
    max_scale: float = 1.0
    corner_sigma: float = 5.0

    def __post_init__(self):
        _check_range(self.min_scale, self.max_scale, "(min_scale, max_scale)")

    def draw(self, images, rng):
        """Draw ``corners`` (N, 4, 2): where the corners land, normalised output coordinates."""
        n = len(images)
        sigma = self.corner_sigma / _half_sizes(images.shape[2:])
        corners = np.empty((n, 4, 2))
        pending = np.arange(n)
        while pending.size:
            scale = rng.uniform(self.min_scale, self.max_scale, pending.size)
            corners[pending] = scale[:, None, None] * _CORNERS + rng.normal(0.0, 1.0, (pending.size, 4, 2)) * sigma
            pending = pending[~_is_convex(corners[pending])]
        return {"corners": corners}

    def apply(self, images, params):
        images = _check_images(images)
        homographies = corner_homography(params["corners"]).astype(np.float32)
        return _resample(images, grids.projective_grid, homographies, images.shape[2:])


@dataclass(frozen=True)
class RandomElastic(_Distortion):
    """Random scaling, then a thin-plate spline that moves a grid of control points (E).

    The output's control points ``c_k`` (a ``control_grid`` × ``control_grid``
    grid spanning the image, see :func:`stn_numba.tps_control_points`)
    read the input at ``c_k / scale`` plus independent Gaussian noise of
    ``control_sigma`` input pixels per axis, with the scale drawn from
    [min_scale, max_scale]; :func:`stn_numba.tps_grid` interpolates the
    warp in between.
    """

    min_scale: float = 0.75
    max_scale: float = 1.0
    control_grid: int = 4
    control_sigma: float = 1.5

    def __post_init__(self):
        _check_range(self.min_scale, self.max_scale, "(min_scale, max_scale)")

    def draw(self, images, rng):
        """Draw ``sources`` (N, K, 2): the input points that the control points show, normalised."""
        n = len(images)
        control = grids.tps_control_points((self.control_grid, self.control_grid))
        scale = rng.uniform(self.min_scale, self.max_scale, n)
        noise = rng.normal(0.0, 1.0, (n,) + control.shape) * (self.control_sigma / _half_sizes(images.shape[2:]))
        return {"sources": control / scale[:, None, None] + noise}

    def apply(self, images, params):
        images = _check_images(images)
        sources = np.asarray(params["sources"], dtype=np.float32)
        return _resample(images, grids.tps_grid, sources, images.shape[2:],
                         control_points=(self.control_grid, self.control_grid))


@dataclass(frozen=True)
class TranslatedCluttered(_Distortion):
    """Random placement in a large canvas with clutter from other digits (TC).

    Each digit is pasted at a uniformly random integer position of a square
    canvas; ``num_patches`` square patches cut at random positions from
    other images of the same batch are pasted at random positions, combined
    with the digit by a pixelwise maximum so that nothing is erased.
    """

    canvas_size: int = 60
    num_patches: int = 6
    patch_size: int = 6

    def draw(self, images, rng):
        """Draw ``position`` (N, 2) and, per patch, ``source`` (N, P), ``cut`` and ``paste`` (N, P, 2).

        Positions are the (row, column) of top-left corners.
        """
        n, (height, width) = len(images), images.shape[2:]
        if self.canvas_size < max(height, width):
            raise ValueError(f"canvas_size {self.canvas_size} is smaller than the images ({height}×{width})")
        if self.patch_size > min(height, width):
            raise ValueError(f"patch_size {self.patch_size} is larger than the images ({height}×{width})")
        if n == 1 and self.num_patches:
            raise ValueError("TC cuts clutter from other digits of the batch, so it needs at least 2 images, got 1")
        position = rng.integers(0, [self.canvas_size - height + 1, self.canvas_size - width + 1], (n, 2))
        shape = (n, self.num_patches)
        # Another image than the digit itself: draw from n - 1 and skip over it.
        source = rng.integers(0, max(n - 1, 1), shape)
        source += source >= np.arange(n)[:, None]
        cut = rng.integers(0, [height - self.patch_size + 1, width - self.patch_size + 1], shape + (2,))
        paste = rng.integers(0, self.canvas_size - self.patch_size + 1, shape + (2,))
        return {"position": position, "source": source, "cut": cut, "paste": paste}

    def apply(self, images, params):
        images = _check_images(images)
        n, channels, height, width = images.shape
        pixels = images.transpose(0, 2, 3, 1)  # channels last: index (image, row, column)
        canvas = np.zeros((n, self.canvas_size, self.canvas_size, channels), dtype=np.float32)
        item = np.arange(n)[:, None, None]
        canvas[(item,) + _block(params["position"], height, width)] = pixels
        size = self.patch_size
        for patch in range(self.num_patches):
            source = params["source"][:, patch, None, None]
            cut = pixels[(source,) + _block(params["cut"][:, patch], size, size)]
            target = (item,) + _block(params["paste"][:, patch], size, size)
            canvas[target] = np.maximum(canvas[target], cut)
        return np.ascontiguousarray(canvas.transpose(0, 3, 1, 2))


DISTORTIONS = {
    "R": RandomSimilarity(max_angle=90.0),
    "RTS": RandomSimilarity(max_angle=45.0, min_scale=0.7, max_scale=1.2, canvas_size=42),
    "P": RandomProjective(),
    "E": RandomElastic(),
    "TC": TranslatedCluttered(),
}


def distort(images, kind, rng):
    """Apply one of the paper's distortions to a batch of images.

    Parameters
    ----------
    images : array_like, float, shape (N, C, H, W)
        Digits, e.g. from :func:`stn_numba.data.load_bundled` (values in [0, 1]).
    kind : {"R", "RTS", "P", "E", "TC"}
        The distortion, by its name in Jaderberg et al. (2015); see the module
        docstring.
    rng : numpy.random.Generator
        The only source of randomness: pass one generator through the epochs
        of training for fresh distortions, and a newly seeded one to rebuild a
        fixed test set.

    Returns
    -------
    numpy.ndarray, float32, shape (N, C, H_out, W_out)
        28×28 for R, P and E, 42×42 for RTS, 60×60 for TC (for 28×28 input).
    """
    if kind not in DISTORTIONS:
        raise ValueError(f"kind must be one of {', '.join(DISTORTIONS)}, got {kind!r}")
    return DISTORTIONS[kind](images, rng)
