"""Each CPU kernel and its CUDA twin, as the two backends declare them
(`stn_numba._kernels.Kernels`): the same name and the same arguments, the
CUDA launcher's ``stream`` last."""

import dataclasses
import inspect

import pytest

from stn_numba._cpu.kernels import KERNELS as CPU_KERNELS
from stn_numba._cuda.kernels import KERNELS as CUDA_KERNELS
from stn_numba._kernels import Kernels


def _entries(kernels):
    """(op, spatial dims or None) -> kernel, for every kernel of a table."""
    entries = {}
    for field in dataclasses.fields(Kernels):
        entry = getattr(kernels, field.name)
        if isinstance(entry, dict):
            assert sorted(entry) == [2, 3], f"{field.name}: expected kernels for 2 and 3 spatial dims"
            entries.update({(field.name, dims): kernel for dims, kernel in entry.items()})
        else:
            entries[(field.name, None)] = entry
    return entries


def _arguments(kernel):
    return list(inspect.signature(getattr(kernel, "py_func", kernel)).parameters)


CPU, CUDA = _entries(CPU_KERNELS), _entries(CUDA_KERNELS)


def test_both_backends_declare_every_kernel():
    assert CPU.keys() == CUDA.keys()


@pytest.mark.parametrize("op", sorted(CPU, key=str), ids=lambda op: f"{op[0]}-{op[1]}d" if op[1] else op[0])
def test_the_cuda_twin_has_the_cpu_kernels_name_and_arguments(op):
    cpu, cuda = CPU[op], CUDA[op]
    # The CPU backwards all sum in a fixed order: the deterministic entry is the backward itself.
    suffix = "_deterministic" if op[0].endswith("_deterministic") else ""
    assert cuda.__name__ == cpu.__name__ + suffix
    assert _arguments(cuda) == _arguments(cpu) + ["stream"]
