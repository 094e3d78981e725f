"""
Padding modes on one image
==========================

Where a sample point falls outside the input, ``padding_mode`` decides what it
reads. The image below is zoomed out by 1.8 and rotated, so most of each output
shows the padding: ``zeros`` reads 0, ``border`` the nearest edge pixel,
``reflection`` the image mirrored at its edges, ``circular`` the image
repeated (scipy.ndimage's "grid-wrap"), and ``constant`` a ``fill_value``
(scipy's "grid-constant" with ``cval``).
"""

import matplotlib.pyplot as plt
import numpy as np

import stn_numba

# %%
# A small test image: a gradient with a bright disc and a bar.
size = 48
y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
image = (0.5 * (x + 1) / 2 + ((x - 0.3) ** 2 + (y + 0.2) ** 2 < 0.12)
         + 0.6 * (np.abs(y - 0.5) < 0.1))[None, None]

angle, zoom = 0.35, 1.8
theta = np.array([[[zoom * np.cos(angle), -zoom * np.sin(angle), 0.1],
                   [zoom * np.sin(angle), zoom * np.cos(angle), 0.0]]])
modes = ["zeros", "border", "reflection", "circular", "constant"]
outputs = {mode: stn_numba.affine_grid_sample(
               image, theta, (1, 1, 96, 96), padding_mode=mode,
               fill_value=0.8 if mode == "constant" else 0.0)
           for mode in modes}

# %%
fig, axes = plt.subplots(1, len(modes) + 1, figsize=(14, 2.8))
axes[0].imshow(image[0, 0], cmap="magma", vmin=0, vmax=2)
axes[0].set_title("input")
for ax, mode in zip(axes[1:], modes):
    ax.imshow(outputs[mode][0, 0], cmap="magma", vmin=0, vmax=2)
    ax.set_title(mode if mode != "constant" else "constant (fill 0.8)")
for ax in axes:
    ax.axis("off")
fig.tight_layout()
