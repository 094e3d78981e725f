"""The API reference (docs/api/index.rst) lists every public name: each module's ``__all__``, no more, no less."""

import importlib
import re
from pathlib import Path

import pytest

API_INDEX = Path(__file__).resolve().parent.parent / "docs" / "api" / "index.rst"
# a subpackage with its own section in the reference, not an entry of its parent's
OWN_SECTIONS = {("stn_numba.nn", "functional")}


def listed_names():
    """{module: names} of the autosummary entries under each ``currentmodule``."""
    listed, module = {}, None
    for line in API_INDEX.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"\.\. currentmodule:: (\S+)$", line):
            module = match.group(1)
        elif (match := re.match(r"   ([A-Za-z_][\w.]*)$", line)) and module:
            listed.setdefault(module, set()).add(match.group(1))
    return listed


LISTED = listed_names()


def test_every_public_module_has_a_section():
    assert set(LISTED) >= {"stn_numba", "stn_numba.nn", "stn_numba.nn.functional", "stn_numba.optim",
                           "stn_numba.io", "stn_numba.data", "stn_numba.dask"}


@pytest.mark.parametrize("module_name", sorted(LISTED))
def test_the_reference_lists_exactly_the_public_names(module_name):
    if module_name == "stn_numba.dask":
        pytest.importorskip("dask.array")
    module = importlib.import_module(module_name)
    public = {name for name in module.__all__ if (module_name, name) not in OWN_SECTIONS}
    assert sorted(public - LISTED[module_name]) == [], f"{module_name}: public but not in {API_INDEX.name}"
    assert sorted(LISTED[module_name] - public) == [], f"{module_name}: in {API_INDEX.name} but not public"
