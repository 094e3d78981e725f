"""Shared test configuration.

Hypothesis runs few, derandomised examples without a deadline: the first call
of a kernel compiles it, and CI (2 cores, cold Numba cache) must stay fast and
reproducible.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "stn",
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("stn")


@pytest.fixture
def rng():
    """A seeded generator, so that every test sees the same data on every run."""
    return np.random.default_rng(20151205)
