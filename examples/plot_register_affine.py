"""
Affine image registration in plain NumPy
========================================

Align a moving image to a fixed one by gradient descent on the affine matrix
θ: the loss is the mean squared difference between the fixed image and the
moving image warped by :func:`stn_numba.affine_grid_sample`, and
:func:`stn_numba.affine_grid_sample_backward` gives its exact gradient with
respect to θ. No autodiff framework is involved.
"""

import matplotlib.pyplot as plt
import numpy as np

import stn_numba

# %%
# A smooth test image, and a moving copy rotated, scaled and shifted.
size = 64
y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
fixed = (np.exp(-((x - 0.25) ** 2 + (y + 0.1) ** 2) / 0.05)
         + 0.7 * np.exp(-((x + 0.3) ** 2 + (y - 0.3) ** 2) / 0.02)
         + 0.4 * (np.abs(x + 0.1) < 0.08) * (np.abs(y) < 0.5))[None, None]
angle, scale = 0.3, 1.15
truth = np.array([[[scale * np.cos(angle), -scale * np.sin(angle), 0.12],
                   [scale * np.sin(angle), scale * np.cos(angle), -0.08]]])
inverse = np.linalg.inv(np.vstack([truth[0], [0, 0, 1]]))[None, :2]
moving = stn_numba.affine_grid_sample(fixed, inverse, fixed.shape,
                                      padding_mode="border")

# %%
# Gradient descent with momentum on θ, starting from the identity.
theta = np.eye(2, 3)[None].copy()
velocity = np.zeros_like(theta)
losses = []
for _ in range(300):
    warped = stn_numba.affine_grid_sample(moving, theta, fixed.shape,
                                          padding_mode="border")
    residual = warped - fixed
    losses.append(float(np.mean(residual ** 2)))
    grad_output = 2 * residual / residual.size
    _, grad_theta = stn_numba.affine_grid_sample_backward(
        grad_output, moving, theta, fixed.shape,
        padding_mode="border", input_requires_grad=False)
    velocity = 0.9 * velocity - 0.5 * grad_theta
    theta = theta + velocity
print(f"loss {losses[0]:.2e} -> {losses[-1]:.2e}")
print("recovered theta:\n", np.round(theta[0], 3))
print("true theta:\n", np.round(truth[0], 3))

# %%
# The fixed image, the moving one, the moving one registered, and the loss.
registered = stn_numba.affine_grid_sample(moving, theta, fixed.shape,
                                        padding_mode="border")
fig, axes = plt.subplots(1, 4, figsize=(12, 3))
for ax, image, title in zip(axes, (fixed, moving, registered),
                             ("fixed", "moving", "registered")):
    ax.imshow(image[0, 0], cmap="gray")
    ax.set_title(title)
    ax.axis("off")
axes[3].semilogy(losses)
axes[3].set_title("loss")
axes[3].set_xlabel("step")
fig.tight_layout()
