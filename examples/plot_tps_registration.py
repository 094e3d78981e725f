"""
Thin-plate-spline registration of a deformed digit
==================================================

A digit is bent by a random thin-plate spline; gradient descent on the 16
control points' source positions bends it back. The chain rule runs through
two exact backward functions: :func:`stn_numba.grid_sample_backward` gives
the loss's gradient with respect to the sampling grid, and
:func:`stn_numba.tps_grid_backward` carries it to the control points.
"""

import matplotlib.pyplot as plt
import numpy as np

import stn_numba
from stn_numba.data import load_bundled

# %%
# A digit from the bundled MNIST subset, and a random smooth deformation of it.
digit = load_bundled().train_images[:1].astype(np.float64)  # (1, 1, 28, 28)
size = digit.shape
identity = stn_numba.tps_control_points((4, 4))[None]  # (1, 16, 2): the undeformed control points
rng = np.random.default_rng(3)
deformation = identity + rng.normal(0, 0.12, identity.shape)
deformed = stn_numba.grid_sample(digit, stn_numba.tps_grid(deformation, size), padding_mode="border")

# %%
# Recover the deformation: minimise the squared difference between the
# warped deformed digit and the original over the control points' positions.
theta = identity.copy()
losses = []
for _ in range(400):
    grid = stn_numba.tps_grid(theta, size)
    warped = stn_numba.grid_sample(deformed, grid, padding_mode="border")
    residual = warped - digit
    losses.append(float(np.mean(residual ** 2)))
    _, grad_grid = stn_numba.grid_sample_backward(2 * residual / residual.size, deformed, grid,
                                                  padding_mode="border", input_requires_grad=False)
    theta -= 0.5 * stn_numba.tps_grid_backward(grad_grid, size)
print(f"loss {losses[0]:.3e} -> {losses[-1]:.3e}")

# %%
# What the loss keeps at the end is mostly the blur of resampling twice (the
# deformed digit is itself a bilinear resample).
fig, axes = plt.subplots(1, 4, figsize=(11, 3))
registered = stn_numba.grid_sample(deformed, stn_numba.tps_grid(theta, size), padding_mode="border")
for ax, image, title in zip(axes, (digit, deformed, registered), ("original", "deformed", "registered")):
    ax.imshow(image[0, 0], cmap="gray")
    ax.set_title(title)
    ax.axis("off")
axes[3].semilogy(losses)
axes[3].set_title("loss")
axes[3].set_xlabel("step")
fig.tight_layout()
