"""The direction of imports inside stn_numba: no cycles, and the kernels never import the public layer.

Every import counts, at module level and inside functions, absolute and relative: a lazy import is still
a dependency, and a cycle through one only waits for the first call to bite. The graph is read from the
source with `ast`, so nothing is imported (the CUDA modules need no numba-cuda here).
"""

import ast
from pathlib import Path

PACKAGE = "stn_numba"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

# The kernels: `@njit` and `@cuda.jit` code and the scalar math and codes they share. Each name covers the
# module and, for a package, everything under it.
KERNELS = ("stn_numba._cpu", "stn_numba._cuda", "stn_numba._coords", "stn_numba._codes")

# Private helpers that the kernels may import. They are held to the kernels' rule themselves (the test
# checks them too), so none can bring the public layer in behind a kernel's back.
#
# | module               | why a kernel needs it                                                           |
# |----------------------|---------------------------------------------------------------------------------|
# | stn_numba._codegen   | `njit`: Numba's decorator, compiled for the host CPU's full vector width        |
# | stn_numba._threading | `guard` (kernels take turns on Numba's workqueue layer), `single_threaded_blas` |
# | stn_numba._memory    | `empty`: `np.empty` with large buffers reused from the calling thread's pool    |
# | stn_numba._kernels   | `Kernels`, `from_modules`: the kernel table each backend declares               |
# | stn_numba._arrays    | `is_device_array` (the CUDA backend views GPU arrays; NumPy only)               |
#
# Not here: `_device` (choosing a backend is dispatch, the public layer's job) and `_checks` (validation).
KERNEL_HELPERS = ("stn_numba._codegen", "stn_numba._threading", "stn_numba._memory", "stn_numba._kernels",
                  "stn_numba._arrays")


def module_name(path, package_dir=PACKAGE_DIR, package=PACKAGE):
    """The dotted name of the module in ``path`` (a package is named by its ``__init__.py``)."""
    parts = path.relative_to(package_dir).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((package,) + parts)


def imported_modules(tree, name, is_package, modules, package=PACKAGE):
    """The modules of the package that a module's source imports, each with the first line that does.

    Parameters
    ----------
    tree : ast.Module
        The module's parsed source.
    name : str
        The module's dotted name.
    is_package : bool
        Whether the module is a package's ``__init__.py`` (relative imports start from the package itself).
    modules : set of str
        Every module of the package: ``from x import y`` imports the module ``x.y`` where there is one,
        else the name ``y`` from ``x``.
    package : str
        Only imports of this package's modules are kept.

    Returns
    -------
    dict
        Imported module name → line number.
    """
    here = name if is_package else name.rpartition(".")[0]
    found = {}

    def add(target, line):
        if target == package or target.startswith(package + "."):
            found[target] = min(line, found.get(target, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # one dot is `here`, each further dot one package up
                parts = here.split(".")
                source = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                add(submodule if submodule in modules else source, node.lineno)
    return found


def package_graph(package_dir=PACKAGE_DIR, package=PACKAGE):
    """Module name → {imported module name: (file, line)} for every module of the package."""
    paths = {module_name(path, package_dir, package): path for path in sorted(package_dir.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        imports = imported_modules(tree, name, path.name == "__init__.py", set(paths), package)
        where = path.relative_to(package_dir.parent)
        graph[name] = {target: (where, line) for target, line in imports.items() if target != name}
    return graph


def cyclic_components(graph):
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted.

    Every import cycle lies inside one; a component may hold several cycles.
    """
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def shortest_cycle(graph, component):
    """A shortest cycle through the component's first module, as a list of modules with the first repeated."""
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first
        node = frontier.pop(0)
        for target in sorted(graph[node]):
            if target == start:
                return paths[node] + [start]
            if target in component and target not in paths:
                paths[target] = paths[node] + [target]
                frontier.append(target)
    raise ValueError(f"{component} is no cycle")


def within(name, prefixes):
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def kernel_side_violations(graph, kernels=KERNELS, helpers=KERNEL_HELPERS):
    """``(importer, imported)`` pairs where a kernel or a kernel helper imports outside the kernel side."""
    allowed = tuple(kernels) + tuple(helpers)
    return sorted((name, target) for name, targets in graph.items() if within(name, allowed)
                  for target in targets if not within(target, allowed))


def describe(graph, edges):
    return "\n".join(f"  {a} -> {b} ({graph[a][b][0]}:{graph[a][b][1]})" for a, b in edges)


def describe_cycles(graph, components):
    """Each component: one cycle through it, then every import between its modules (all of them to break)."""
    parts = []
    for component in components:
        inside = [(a, b) for a in component for b in sorted(graph[a]) if b in component]
        parts.append(" -> ".join(shortest_cycle(graph, component)) + "; the imports inside:\n"
                     + describe(graph, inside))
    return "\n".join(parts)


def test_the_package_has_no_import_cycles():
    graph = package_graph()
    components = cyclic_components(graph)
    assert not components, "import cycles:\n" + describe_cycles(graph, components)


def test_kernels_import_only_kernels_and_their_helpers():
    graph = package_graph()
    violations = kernel_side_violations(graph)
    assert not violations, ("kernel-side modules importing the public layer (allowed: KERNELS and "
                            "KERNEL_HELPERS in tests/test_imports.py):\n" + describe(graph, violations))


def test_the_graph_is_read_from_every_kind_of_import():
    graph = package_graph()
    # module level, relative, a module named in `from .. import`
    assert "stn_numba._memory" in graph["stn_numba._cpu.conv"]
    # a name from a module, relative
    assert "stn_numba._coords" in graph["stn_numba._cpu.grids"]
    # inside a function
    assert "stn_numba._cpu.sampling" in graph["stn_numba._device"]
    # a package's relative import starts at the package
    assert "stn_numba.fields" in graph["stn_numba"]
    for name in KERNELS + KERNEL_HELPERS:
        assert name in graph, f"{name} in the kernel tables is no module of the package"


def test_the_checks_fail_on_a_cycle_and_on_a_kernel_importing_the_public_layer(tmp_path):
    package = tmp_path / "pkg"
    (package / "_cpu").mkdir(parents=True)
    sources = {
        "__init__.py": "from .api import run\n",
        "api.py": "from ._cpu import kernels\n\ndef run():\n    from . import _helper\n",
        "_helper.py": "import pkg.api\n",
        "_cpu/__init__.py": "",
        "_cpu/kernels.py": "from .. import _codes\n\ndef late():\n    from ..api import run\n",
        "_codes.py": "",
    }
    for path, text in sources.items():
        (package / path).write_text(text)
    graph = package_graph(package, "pkg")
    assert graph["pkg.api"] == {"pkg._cpu.kernels": (Path("pkg/api.py"), 1), "pkg._helper": (Path("pkg/api.py"), 4)}
    components = cyclic_components(graph)
    assert components == [["pkg._cpu.kernels", "pkg._helper", "pkg.api"]]
    assert shortest_cycle(graph, components[0]) == ["pkg._cpu.kernels", "pkg.api", "pkg._cpu.kernels"]
    report = describe_cycles(graph, components)
    assert "pkg._helper -> pkg.api (pkg/_helper.py:1)" in report and "pkg.api -> pkg._helper (pkg/api.py:4)" in report
    assert kernel_side_violations(graph, ("pkg._cpu", "pkg._codes"), ()) == [("pkg._cpu.kernels", "pkg.api")]
    assert kernel_side_violations(graph, ("pkg._cpu", "pkg._codes", "pkg.api"), ()) == [("pkg.api", "pkg._helper")]
    del graph["pkg._cpu.kernels"]["pkg.api"], graph["pkg._helper"]["pkg.api"]
    assert cyclic_components(graph) == []
