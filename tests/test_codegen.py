"""stn_numba._codegen: full-width AVX-512 vectors, kernels vectorised by their narrowest type, and a user's
settings and functions left alone.

Each check runs in a fresh interpreter: Numba takes its target's features
once per process, at the first compilation.
"""

import json
import os
import subprocess
import sys

import llvmlite.binding as llvm

HOST_FEATURES = llvm.get_host_cpu_features().flatten()
HAS_AVX512 = "+avx512f" in HOST_FEATURES.split(",")


def run_fresh(script, **env_changes):
    """The JSON line ``script`` prints last, run in a new interpreter with the
    environment less Numba's CPU settings, plus ``env_changes``."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}
    env.update(env_changes)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


AFTER_A_CALL = """
import json
import numpy as np
import numba
import stn_numba
from numba.core import registry
stn_numba.grid_sample(np.ones((1, 1, 4, 4), np.float32), np.zeros((1, 2, 2, 2), np.float32))
print(json.dumps({"config": numba.config.CPU_FEATURES,
                  "target": registry.cpu_target.target_context.codegen().magic_tuple()[2]}))
"""


def test_the_kernels_compile_without_the_256_bit_preference_on_avx512():
    got = run_fresh(AFTER_A_CALL)
    if HAS_AVX512:
        assert got["config"] == f"{HOST_FEATURES},-prefer-256-bit"
        assert got["target"] == got["config"]
    else:
        assert got["config"] is None
        assert got["target"] == HOST_FEATURES


def test_a_users_features_win():
    chosen = HOST_FEATURES  # the host's own: LLVM's tuning kept
    got = run_fresh(AFTER_A_CALL, NUMBA_CPU_FEATURES=chosen)
    assert got == {"config": chosen, "target": chosen}


def test_nothing_changes_once_numba_has_compiled():
    got = run_fresh("""
import json
import numba
numba.njit(lambda x: x + 1)(1)
import stn_numba
from numba.core import registry
print(json.dumps({"config": numba.config.CPU_FEATURES,
                  "target": registry.cpu_target.target_context.codegen().magic_tuple()[2]}))
""")
    assert got == {"config": None, "target": HOST_FEATURES}


def test_only_cpus_with_avx512_are_changed():
    got = run_fresh("""
import json
import numba
import stn_numba
from stn_numba import _codegen
numba.config.CPU_FEATURES = None
without = _codegen.prefer_full_width_vectors(lambda: "+avx2,+fma,-avx512f")
after_without = numba.config.CPU_FEATURES
with_avx512 = _codegen.prefer_full_width_vectors(lambda: "+avx2,+avx512f")
print(json.dumps([without, after_without, with_avx512, numba.config.CPU_FEATURES]))
""")
    assert got == [None, None, "+avx2,+avx512f,-prefer-256-bit", "+avx2,+avx512f,-prefer-256-bit"]


LOOP_WIDTHS = """
import json, re
import numpy as np
import numba
from stn_numba import _codegen


def make():
    def scaled(source, factors, out):  # int64 factors: the widest type sets LLVM's default width
        for p in range(out.size):
            out[p] = source[p] * np.float32(factors[p])
    return scaled


def instructions(dispatcher):
    asm = dispatcher.inspect_asm(dispatcher.signatures[0])
    lines = [line.split("#")[0].strip() for line in asm.splitlines()]
    return [re.sub(r"[\\w.$]*scaled[\\w.$]*", "F", line) for line in lines
            if line and not line.startswith(".") and not line.endswith(":")]


args = (np.ones(64, np.float32), np.arange(64), np.empty(64, np.float32))
compiled = []
for jit in (numba.njit, _codegen.njit, numba.njit):
    function = jit(make())
    function(*args)
    compiled.append(instructions(function))
before, kernel, after = compiled
print(json.dumps({"kernel_differs": kernel != before, "after_as_before": after == before,
                  "zmm": [sum("zmm" in line for line in code) for code in compiled]}))
"""


def test_kernels_vectorise_by_the_narrowest_type_and_other_functions_as_before():
    got = run_fresh(LOOP_WIDTHS)
    assert got["after_as_before"], got  # the option is unset after the kernel's compilation
    if HAS_AVX512:
        assert got["kernel_differs"], got
        assert got["zmm"][1] > got["zmm"][0], got  # 16 float32 lanes, not 8
