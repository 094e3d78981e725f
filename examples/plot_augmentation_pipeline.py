"""
An augmentation pipeline over an image stack
============================================

Random rotations, scales and shifts of a stack of digits in one call of
:func:`stn_numba.affine_grid_sample`, then the same pipeline on a chunked
Dask array with :func:`stn_numba.dask.affine_grid_sample`, which gives the
same values chunk by chunk.
"""

import dask.array as da
import matplotlib.pyplot as plt
import numpy as np

import stn_numba
import stn_numba.dask
from stn_numba.data import load_bundled

# %%
# Sixteen digits and one random similarity transform each.
images = load_bundled().train_images[:16]  # (16, 1, 28, 28) float32
rng = np.random.default_rng(0)
angle = rng.uniform(-0.6, 0.6, len(images))
scale = rng.uniform(0.8, 1.25, len(images))
shift = rng.uniform(-0.15, 0.15, (len(images), 2))
cos, sin = scale * np.cos(angle), scale * np.sin(angle)
theta = np.stack([np.stack([cos, -sin, shift[:, 0]], axis=1),
                  np.stack([sin, cos, shift[:, 1]], axis=1)],
                 axis=1).astype(np.float32)  # (16, 2, 3)
augmented = stn_numba.affine_grid_sample(images, theta, images.shape,
                                         padding_mode="zeros")

# %%
# The same on a Dask array of four chunks of four images: the result is lazy
# until computed, and equal to the in-memory one.
stack = da.from_array(images, chunks=(4, 1, 28, 28))
lazy = stn_numba.dask.affine_grid_sample(stack, theta, images.shape)
print(lazy)
same = np.array_equal(lazy.compute(scheduler="synchronous"), augmented)
print("same values as in memory:", same)

# %%
fig, axes = plt.subplots(2, 8, figsize=(12, 3.4))
for k, ax in enumerate(axes.flat):
    ax.imshow(augmented[k, 0], cmap="gray")
    ax.axis("off")
fig.suptitle("random similarity transforms of 16 digits")
fig.tight_layout()
