"""What the documentation refers to exists: the API reference (docs/api/index.rst) lists each public
module's ``__all__``, no more, no less; every test that the docs, README and CONTRIBUTING name is there."""

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


# ---------------------------------------------------------------- tests the documentation names
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
DOCUMENTS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
# `test_x.py::name`, `tests/cuda/test_x.py::name`, and `::name` for another name in the file cited last
CITATION = re.compile(r"(?:tests/)?((?:cuda/)?test_\w+\.py)(?:::(\w+))?|(?<=`)::(\w+)")


def cited_tests():
    """(document, file, name or None) of every test file and test a document names."""
    for document in DOCUMENTS:
        for line in document.read_text(encoding="utf-8").splitlines():
            last = None
            for match in CITATION.finditer(line):
                file, name, continued = match.groups()
                if file:
                    last = file
                    yield document.name, file, name
                elif last:
                    yield document.name, last, continued


def test_the_documents_name_only_tests_that_exist():
    missing = []
    citations = list(cited_tests())
    for document, file, name in citations:
        path = TESTS / file
        if not path.is_file():
            missing.append(f"{document}: {file}")
        elif name and not re.search(rf"^(def|class) {name}\b|^{name} = ", path.read_text(encoding="utf-8"), re.M):
            missing.append(f"{document}: {file}::{name}")
    assert len(citations) > 40 and missing == []
