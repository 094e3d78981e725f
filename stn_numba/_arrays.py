"""Telling host arrays from GPU arrays, with NumPy alone.

Both the dispatch (`stn_numba._device`) and the CUDA backend ask this; neither
imports the other for it, and nothing here imports numba.cuda.
"""

import numpy as np

_DLPACK_CUDA_DEVICES = (2, 13)  # kDLCUDA, kDLCUDAManaged


def is_device_array(value):
    """Whether ``value`` lives in GPU memory."""
    if isinstance(value, np.ndarray):
        return False
    if hasattr(value, "__cuda_array_interface__"):
        return True
    # The CUDA simulator's FakeCUDAArray has no __cuda_array_interface__.
    if type(value).__module__.startswith("numba.cuda.simulator"):
        return True
    dlpack_device = getattr(value, "__dlpack_device__", None)
    if dlpack_device is None:
        return False
    try:
        return dlpack_device()[0] in _DLPACK_CUDA_DEVICES
    except Exception:
        return False
