"""``scripts/check_docs.py`` on a small synthetic site: it passes a sound one and names each kind of fault."""

import importlib.util
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "check_docs.py"
_spec = importlib.util.spec_from_file_location("check_docs", _SCRIPT)
check_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_docs)


def _write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def site(tmp_path):
    """Sources, gallery examples and a built site in which every page and link is sound."""
    source, build, examples = tmp_path / "docs", tmp_path / "docs" / "_build" / "html", tmp_path / "examples"
    _write(source / "index.rst")
    _write(source / "guide.md")
    _write(source / "_build" / "html" / "stale.md")  # a build artefact, not a source page
    _write(examples / "plot_demo.py")
    _write(examples / "helper.py")  # not a gallery example: no page needed
    _write(build / "index.html", '<a href="guide.html#usage">guide</a> <a href="https://example.org">x</a>'
                                 '<a href="auto_examples/">gallery</a> <img src="_images/a.png">')
    _write(build / "guide.html", '<h1 id="usage">Usage</h1><a href="index.html">home</a><a href="#usage">here</a>')
    _write(build / "auto_examples" / "index.html", '<a href="plot_demo.html">demo</a>')
    _write(build / "auto_examples" / "plot_demo.html", '<img src="../_images/a.png">')
    _write(build / "_images" / "a.png")
    _write(build / "_static" / "macros.html", '<a href="{{ pathto(x) }}">a theme template, not a page</a>')
    return source, build, examples


def _problems(site):
    source, build, examples = site
    return check_docs.missing_pages(source, build, examples) + check_docs.broken_links(build)[0]


def test_a_sound_site_passes(site):
    assert _problems(site) == []
    assert check_docs.broken_links(site[1])[1] == "4 pages, 8 links (1 external, not fetched)"


def test_a_missing_file_is_named(site):
    _write(site[1] / "guide.html", '<h1 id="usage"></h1><a href="api/missing.html">x</a><img src="_images/b.png">')
    assert _problems(site) == ["guide.html: 'api/missing.html' names a file that is not in the build",
                               "guide.html: '_images/b.png' names a file that is not in the build"]


def test_a_missing_anchor_is_named(site):
    _write(site[1] / "guide.html", '<h1 id="usage"></h1><a href="index.html#nowhere">x</a><a href="#gone">y</a>')
    assert _problems(site) == ["guide.html: 'index.html#nowhere' names an anchor that its page does not define",
                               "guide.html: '#gone' names an anchor that its page does not define"]


def test_an_unbuilt_page_and_a_gallery_page_without_a_figure_are_named(site):
    source, build, examples = site
    _write(source / "api" / "extra.md")
    _write(examples / "plot_other.py")
    _write(build / "auto_examples" / "plot_demo.html", "<p>the example failed before its figure</p>")
    assert _problems(site) == ["api/extra.md: no HTML page was built",
                               "examples/plot_demo.py: its gallery page shows no figure",
                               "examples/plot_other.py: no gallery page was built"]
