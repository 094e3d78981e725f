"""
Rotate a batch of images and undo it
====================================

Warp a batch of images with random rotations and undo it again.

Run with ``python examples/quickstart.py``. It builds affine grids for a batch
of rotations, samples the images at them, then applies the inverse rotations
and reports how close the round trip comes back to the originals.
"""

import time

import numpy as np

import stn_numba


def rotation_thetas(angles):
    """Affine matrices (N, 2, 3) rotating by ``angles`` (radians) about the centre."""
    cos, sin = np.cos(angles), np.sin(angles)
    theta = np.zeros((len(angles), 2, 3), dtype=np.float32)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    return theta


def main():
    rng = np.random.default_rng(0)
    n, size = 64, 64
    yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    # Smooth blobs, so that bilinear resampling loses little.
    centres = rng.uniform(-0.4, 0.4, size=(n, 2, 1, 1))
    images = np.exp(-((xx - centres[:, :1]) ** 2 + (yy - centres[:, 1:]) ** 2) / 0.05)
    images = images.astype(np.float32)
    angles = rng.uniform(-np.pi / 4, np.pi / 4, size=n)

    start = time.perf_counter()
    grid = stn_numba.affine_grid(rotation_thetas(angles), images.shape)
    warped = stn_numba.grid_sample(images, grid)
    inverse_grid = stn_numba.affine_grid(rotation_thetas(-angles), images.shape)
    restored = stn_numba.grid_sample(warped, inverse_grid)
    seconds = time.perf_counter() - start

    inner = slice(size // 4, 3 * size // 4)  # corners rotate out of view
    error = np.abs(restored - images)[..., inner, inner].max()
    low, high = np.degrees(angles.min()), np.degrees(angles.max())
    print(f"warped {n} images of {size}x{size} by rotations of {low:+.1f}..{high:+.1f}"
          f" degrees and back in {seconds * 1e3:.1f} ms (first call compiles)")
    print(f"largest round-trip error in the central region: {error:.4f} "
          "(images in [0, 1])")


if __name__ == "__main__":
    main()
