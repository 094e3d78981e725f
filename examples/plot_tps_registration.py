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
# (1, 16, 2): the undeformed control points
identity = stn_numba.tps_control_points((4, 4))[None]
rng = np.random.default_rng(3)
deformation = identity + rng.normal(0, 0.12, identity.shape)
deformed = stn_numba.grid_sample(
    digit, stn_numba.tps_grid(deformation, size), padding_mode="border")

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
    _, grad_grid = stn_numba.grid_sample_backward(
        2 * residual / residual.size, deformed, grid,
        padding_mode="border", input_requires_grad=False)
    theta -= 0.5 * stn_numba.tps_grid_backward(grad_grid, size)
print(f"loss {losses[0]:.3e} -> {losses[-1]:.3e}")

# %%
# The recovered grid drawn over the deformed digit: each output pixel reads
# the deformed digit where its grid line passes (pixel ``i`` of ``n`` sits at
# ``((x + 1) * n - 1) / 2`` with ``align_corners=False``). What the loss keeps
# at the end is mostly the blur of resampling twice (the deformed digit is
# itself a bilinear resample).
grid = stn_numba.tps_grid(theta, size)[0]
columns = ((grid[..., 0] + 1) * size[3] - 1) / 2
rows = ((grid[..., 1] + 1) * size[2] - 1) / 2
registered = stn_numba.grid_sample(deformed, grid[None], padding_mode="border")
fig, axes = plt.subplots(1, 3, figsize=(9, 3.4), layout="constrained")
axes[0].imshow(digit[0, 0], cmap="gray")
axes[0].set_title("original")
axes[1].imshow(deformed[0, 0], cmap="gray")
axes[1].plot(columns[::3].T, rows[::3].T, "c-", lw=0.7)
axes[1].plot(columns[:, ::3], rows[:, ::3], "c-", lw=0.7)
axes[1].set_title("deformed, recovered grid")
axes[2].imshow(registered[0, 0], cmap="gray")
axes[2].set_title("registered")
for ax in axes:
    ax.axis("off")
