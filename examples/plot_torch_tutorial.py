"""
The PyTorch spatial-transformer tutorial, without torch
=======================================================

The model of PyTorch's spatial-transformer tutorial, written with
``stn_numba.nn`` instead of ``torch.nn`` (the same layer names and
arguments), trained with ``stn_numba.optim`` on digits rotated by up to 90°
(the paper's "R" distortion). The localisation network learns θ through
:func:`stn_numba.nn.functional.affine_grid` and ``grid_sample``, whose
backward passes are stn_numba's kernels.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

import stn_numba.nn as nn
import stn_numba.nn.functional as F
from stn_numba import Tensor, manual_seed, no_grad, optim
from stn_numba.data import distort, load_bundled


class Net(nn.Module):
    """The tutorial's ``Net``: a localisation net and sampler before a small CNN."""

    def __init__(self):
        super().__init__()
        self.localization = nn.Sequential(
            nn.Conv2d(1, 8, kernel_size=7), nn.MaxPool2d(2, stride=2), nn.ReLU(True),
            nn.Conv2d(8, 10, kernel_size=5), nn.MaxPool2d(2, stride=2), nn.ReLU(True))
        self.fc_loc = nn.Sequential(nn.Linear(10 * 3 * 3, 32), nn.ReLU(True),
                                    nn.Linear(32, 3 * 2))
        # start from the identity transform, as the tutorial does
        self.fc_loc[2].weight.data[...] = 0
        self.fc_loc[2].bias.data[...] = [1, 0, 0, 0, 1, 0]
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.conv2_drop = nn.Dropout2d()
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, 10)

    def stn(self, x):
        features = self.localization(x).reshape(-1, 10 * 3 * 3)
        theta = self.fc_loc(features).reshape(-1, 2, 3)
        grid = F.affine_grid(theta, x.shape, align_corners=False)
        return F.grid_sample(x, grid, align_corners=False)

    def forward(self, x):
        x = self.stn(x)
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.reshape(-1, 320)))
        x = F.dropout(x, training=self.training)
        return F.log_softmax(self.fc2(x), dim=1)


# %%
# Train on freshly rotated digits of the bundled 4,000-digit subset; test on
# a fixed rotated copy of its 1,000 test digits. (A few epochs on 4,000
# digits: the error stays well above the tutorial's on the full MNIST.)
data = load_bundled()
rng = np.random.default_rng(0)
test_images = distort(data.test_images, "R", np.random.default_rng(1))
manual_seed(0)
model = Net()
optimizer = optim.Adam(model.parameters(), lr=2e-3)
start = time.perf_counter()
for epoch in range(8):
    model.train()
    order = rng.permutation(len(data.train_images))
    for first in range(0, len(order), 64):
        batch = order[first:first + 64]
        optimizer.zero_grad()
        digits = Tensor(distort(data.train_images[batch], "R", rng))
        loss = F.nll_loss(model(digits), data.train_labels[batch])
        loss.backward()
        optimizer.step()
    model.eval()
    with no_grad():
        predicted = model(Tensor(test_images)).data.argmax(axis=1)
    print(f"epoch {epoch + 1}: test error {np.mean(predicted != data.test_labels):.1%} "
          f"({time.perf_counter() - start:.1f} s)")

# %%
# What the spatial transformer feeds the classifier after these few epochs:
# here mostly a slight zoom (the main job, ``stn-numba demo``, trains longer
# and reports how much the transformer helps).
with no_grad():
    straightened = model.stn(Tensor(test_images[:8])).data
fig, axes = plt.subplots(2, 8, figsize=(12, 3.2))
for k in range(8):
    axes[0, k].imshow(test_images[k, 0], cmap="gray")
    axes[1, k].imshow(straightened[k, 0], cmap="gray")
for ax in axes.flat:
    ax.axis("off")
axes[0, 0].set_title("input", loc="left")
axes[1, 0].set_title("transformed", loc="left")
fig.tight_layout()
