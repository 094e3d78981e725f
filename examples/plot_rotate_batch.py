"""
Rotate a batch of images and undo it
====================================

The smallest round trip: build affine grids for a batch of rotations with
:func:`stn_numba.affine_grid`, sample the images there with
:func:`stn_numba.grid_sample`, then apply the inverse rotations and see how
close the images come back. Run it as ``python examples/plot_rotate_batch.py``.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

import stn_numba


def rotation_thetas(angles):
    """Affine matrices (N, 2, 3) rotating by ``angles`` (radians) about the centre."""
    cos, sin = np.cos(angles), np.sin(angles)
    theta = np.zeros((len(angles), 2, 3), dtype=np.float32)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos
    return theta


# %%
# A batch of 64 smooth blobs (so that bilinear resampling loses little), and a
# random rotation of up to 45 degrees each way for every image.
rng = np.random.default_rng(0)
n, size = 64, 64
yy, xx = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
centres = rng.uniform(-0.4, 0.4, size=(n, 2, 1, 1))
images = np.exp(-((xx - centres[:, :1]) ** 2 + (yy - centres[:, 1:]) ** 2) / 0.05)
images = images.astype(np.float32)  # (N, 1, H, W)
angles = rng.uniform(-np.pi / 4, np.pi / 4, size=n)

# %%
# Rotate, then rotate back. The first call of each kernel compiles it (or
# loads it from Numba's cache), so the time includes that.
start = time.perf_counter()
grid = stn_numba.affine_grid(rotation_thetas(angles), images.shape)
warped = stn_numba.grid_sample(images, grid)
inverse_grid = stn_numba.affine_grid(rotation_thetas(-angles), images.shape)
restored = stn_numba.grid_sample(warped, inverse_grid)
seconds = time.perf_counter() - start

inner = slice(size // 4, 3 * size // 4)  # the corners rotate out of view
error = np.abs(restored - images)[..., inner, inner].max()
low, high = np.degrees(angles.min()), np.degrees(angles.max())
print(f"warped {n} images of {size}x{size} by rotations of {low:+.1f}..{high:+.1f}"
      f" degrees and back in {seconds * 1e3:.1f} ms")
print(f"largest round-trip error in the central region: {error:.4f} "
      "(images in [0, 1])")

# %%
# One image of the batch on its way: what is left of the round trip is the
# blur of resampling twice, and zeros where the corners left the frame.
k = int(np.argmax(np.abs(angles)))
fig, axes = plt.subplots(1, 4, figsize=(10, 2.8), layout="constrained")
panels = (images[k, 0], warped[k, 0], restored[k, 0], np.abs(restored - images)[k, 0])
titles = ("image", f"rotated {np.degrees(angles[k]):+.0f}°", "rotated back",
          "|difference|")
for ax, panel, title in zip(axes, panels, titles):
    ax.imshow(panel, cmap="magma", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")
