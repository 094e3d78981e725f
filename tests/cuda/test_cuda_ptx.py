"""Every CUDA kernel compiles for a real GPU, and float32 kernels do float32 arithmetic only.

The simulator runs kernels as Python, so it cannot see what the CUDA target
refuses (Python objects, unsupported functions) or float64 promotion in a
float32 kernel (a Python float literal, an int/int division). This test
compiles each kernel to PTX for compute capability 9.0 with NVVM, in a fresh
interpreter without the simulator; that needs no GPU, only the CUDA
toolkit's NVVM and NVRTC libraries, and is skipped without them.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

COMPILE_EVERY_KERNEL = """
import json, re, types as pytypes
from numba import cuda, types as t

if not cuda.is_available():
    # compile_ptx asks the current device for its compute capability when a kernel calls a
    # device function; without a GPU, answer for it.
    import numba.cuda.dispatcher as dispatcher
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(9, 0))

def probe(a):
    a[0] = 1
try:
    cuda.compile_ptx(probe, (t.float32[::1],), cc=(9, 0))
except Exception as error:
    print(json.dumps({"skip": f"{type(error).__name__}: {error}"}))
    raise SystemExit

from stn_numba._cuda import fields, grids, padding, sampling

# libdevice's float32 cosf/sinf reduce huge arguments (Payne-Hanek) with one float64 multiply by
# pi/2 * 2**-64: the only float64 allowed, and only in the kernels that call them.
TRIGONOMETRIC = {"_similarity_to_affine", "_similarity_to_affine_backward"}
# The grid backwards sum theta's gradient in float64 by design (a float32 overflow gives Inf, never
# Inf * 0 = NaN; the CPU twins do the same).
FLOAT64_SUMS = {"_affine_grid_backward_partials", "_projective_grid_backward_partials"}
LIBDEVICE_REDUCTION = re.compile(r"cvt\\.rn\\.f64\\.s64|mul\\.f64 .*0d3BF921FB54442D19|cvt\\.rn\\.f32\\.f64")
i64, b1 = t.int64, t.boolean
shape3 = t.UniTuple(i64, 3)
index = lambda ndim: t.Array(i64, ndim, "C")
for dtype in (t.float32, t.float64):
    a = lambda ndim: t.Array(dtype, ndim, "C")
    kernels = [
        (grids._affine_grid, (a(3), a(4), i64, i64, b1)),
        (grids._affine_grid_backward_partials, (a(3), i64, i64, i64, b1, a(3))),
        (grids._sum_strided, (a(3), a(3))),
        (grids._projective_grid, (a(3), a(4), b1)),
        (grids._projective_grid_backward_partials, (a(3), a(3), i64, i64, b1, a(3))),
        (grids._tps_grid, (a(2), a(3), a(3))),
        (grids._tps_grid_backward_partials, (a(2), a(3), a(3))),
        (grids._attention_to_affine, (a(2), a(3))),
        (grids._attention_to_affine_backward, (a(3), a(2))),
        (grids._similarity_to_affine, (a(2), a(3))),
        (grids._similarity_to_affine_backward, (a(3), a(2), a(2))),
        (sampling._fill, (a(1), dtype)),
        # points = a grid or, with affine=True, theta (the fused affine_grid_sample): one kernel each
        (sampling._sample, (a(3), a(3), b1, shape3, a(3), i64, i64, i64, i64, i64, b1)),
        (sampling._sample_backward, (a(3), a(3), a(3), b1, shape3, a(3), a(3), i64, i64, i64, i64, i64, b1, b1)),
        (sampling._count_taps, (a(3), b1, shape3, index(1), i64, i64, i64, i64, i64, b1)),
        (sampling._place_taps, (a(3), b1, shape3, index(1), index(1), index(1), a(1), i64, i64, i64, i64, i64,
                                b1)),
        (sampling.gather_taps, (a(3), index(1), index(1), a(1), i64, a(3))),
        (padding._fill_outside, (a(3), a(3), shape3, dtype, i64, b1)),
        (padding._fill_outside_backward, (a(3), a(3), a(3), shape3, dtype, i64, b1)),
        (fields._jacobian_determinant, (a(5), a(4))),
        (fields._jacobian_determinant_backward, (a(4), a(5), a(5))),
        (fields._warp, (a(5), a(5), a(5), i64, i64, b1, dtype)),
        (fields._warp_displacement_gradient, (a(5), a(5), a(5), a(5), i64, i64, b1, dtype)),
        (fields._warp_input_gradient, (a(5), a(5), a(5), a(5), i64, i64, b1)),
        (fields._warp_count_taps, (a(5), a(5), index(1), i64, i64, b1)),
        (fields._warp_place_taps, (a(5), a(5), index(1), index(1), index(1), a(1), i64, i64, b1, i64)),
        (fields._field_add, (a(1), a(1))),
        (fields._field_scale, (a(1), a(1), dtype)),
    ]
    if dtype == t.float32:
        kernels += [(sampling._fill, (index(1), t.int64)), (sampling._chunk_sums, (index(1), index(1))),
                    (sampling._chunk_scan, (index(1), index(1), index(1)))]
    for kernel, signature in kernels:
        name = kernel.py_func.__name__
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
        f64 = re.findall(r"^\\s*([a-z][\\w.]*\\.f64\\b.*)$", ptx, re.M)
        if name in FLOAT64_SUMS:
            f64 = []
        elif name in TRIGONOMETRIC:
            f64 = [line for line in f64 if not LIBDEVICE_REDUCTION.match(line)]
        print(json.dumps({"kernel": name, "dtype": str(dtype), "signature": str(signature), "f64_instructions": f64}))
"""


@pytest.mark.subprocess
def test_every_kernel_compiles_to_ptx_and_float32_kernels_use_no_float64():
    environment = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), environment.get("PYTHONPATH")]))
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(COMPILE_EVERY_KERNEL)], capture_output=True,
                            text=True, env=environment, cwd=REPO_ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    if lines and "skip" in lines[0]:
        pytest.skip(f"cannot compile PTX here (needs the CUDA toolkit's NVVM and NVRTC): {lines[0]['skip']}")
    assert len(lines) == 59
    for line in lines:
        if line["dtype"] == "float32":
            assert not line["f64_instructions"], line
    assert any(line["f64_instructions"] for line in lines if line["dtype"] == "float64")  # the check can see f64
