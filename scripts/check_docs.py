"""Check a built HTML documentation site: every page built, every internal link resolves.

Usage, after ``sphinx-build -W -b html docs docs/_build/html``::

    python scripts/check_docs.py [docs] [docs/_build/html]

It fails (exit status 1, one line per problem) when

- a source page under ``docs/`` (``.md``, ``.rst``) or a gallery example
  (``examples/plot_*.py``) has no HTML page, or a gallery page has no figure;
- an internal ``href`` or ``src`` names a file that is not in the build, or an
  ``#anchor`` that the target page does not define.

External links (``http:``, ``https:``, ``mailto:``) are counted, not fetched:
the build and CI run without a network. This reads the HTML that readers get,
so it also catches links that Sphinx passes through unchecked (a Markdown
link to a repository file, an image path in an included README section).
"""

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

SOURCE_SUFFIXES = (".md", ".rst")
EXCLUDED_SOURCES = ("_build", "_templates", "_static", "auto_examples", "api/generated", "table1",
                    "sg_execution_times.rst")
GALLERY = "auto_examples"


class _Page(HTMLParser):
    """The ids a page defines, the links it makes, and how many images it shows."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()
        self.links = []
        self.images = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "img":
            self.images += 1
        for key in ("href", "src"):
            if attrs.get(key) is not None and not (tag == "link" and attrs.get("rel") == "canonical"):
                self.links.append(attrs[key])


def _parse(path):
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def missing_pages(source_dir, build_dir, examples_dir):
    """Source documents and gallery examples with no HTML page (or, for an example, no figure)."""
    problems = []
    for source in sorted(source_dir.rglob("*")):
        relative = source.relative_to(source_dir).as_posix()
        if source.suffix not in SOURCE_SUFFIXES or any(relative.startswith(part) for part in EXCLUDED_SOURCES):
            continue
        if not (build_dir / relative).with_suffix(".html").is_file():
            problems.append(f"{relative}: no HTML page was built")
    for example in sorted(examples_dir.glob("plot_*.py")):
        html = build_dir / GALLERY / f"{example.stem}.html"
        if not html.is_file():
            problems.append(f"examples/{example.name}: no gallery page was built")
        elif _parse(html).images == 0:
            problems.append(f"examples/{example.name}: its gallery page shows no figure")
    return problems


def _built_pages(build_dir):
    """Every HTML page of the site, parsed (``_static`` holds the theme's templates, not pages)."""
    return {path.resolve(): _parse(path) for path in build_dir.rglob("*.html")
            if "_static" not in path.relative_to(build_dir).parts}


def broken_links(build_dir):
    """Internal links of the site's pages that name a missing file or anchor; and the numbers checked."""
    pages = _built_pages(build_dir)
    problems, external = [], 0
    for path, page in sorted(pages.items()):
        where = path.relative_to(build_dir.resolve()).as_posix()
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc:
                external += parts.scheme in ("http", "https", "mailto")
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{where}: {link!r} names a file that is not in the build")
            elif parts.fragment and target in pages and unquote(parts.fragment) not in pages[target].ids:
                problems.append(f"{where}: {link!r} names an anchor that its page does not define")
    links = sum(len(page.links) for page in pages.values())
    return problems, f"{len(pages)} pages, {links} links ({external} external, not fetched)"


def main(argv):
    root = Path(__file__).resolve().parent.parent
    source_dir = Path(argv[0]) if argv else root / "docs"
    build_dir = Path(argv[1]) if len(argv) > 1 else source_dir / "_build" / "html"
    if not (build_dir / "index.html").is_file():
        print(f"check_docs: {build_dir} has no index.html; build the site first", file=sys.stderr)
        return 1
    problems = missing_pages(source_dir, build_dir, root / "examples")
    link_problems, checked = broken_links(build_dir)
    problems += link_problems
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"check_docs: {checked}, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
