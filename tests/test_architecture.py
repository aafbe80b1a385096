"""The shape of the house, read from the source with ``ast`` (nothing is imported): no import cycles between files,
imports running one way through the layers common < kernels < models < live < benchmarks, no file over 400 lines,
at most 16 modules at ``live/``'s root (the rest in rooms), and no backend probed for what it can do
(``getattr``/``hasattr`` on a backend or model object under ``live/``: the contract is declared, ``live.backends``).

An edge is any import of one project file by another: at module level, inside a function (a lazy import), under
``if TYPE_CHECKING:`` (a type-only import is still a dependency of the design), relative (``from . import x``) or
through ``importlib.import_module("...")`` with a literal name. ``import a.b`` and ``from a import b`` where ``b`` is
a submodule point at ``a/b.py`` (or ``a/b/__init__.py``); ``from a import name`` where ``name`` is an attribute
points at ``a/__init__.py``. Importing ``a.b`` also runs ``a/__init__.py`` first, but that is not counted as an
edge: a package ``__init__`` that re-exports from its own submodules would otherwise close a cycle with every one of
them that imports a sibling. A submodule that takes a name from its own package's ``__init__`` while the ``__init__``
imports it is a cycle, and is reported as one.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The one top-level package; its sub-packages are the layers, and lower layers never import higher ones. Modules at
# the package's own root (``__init__``, ``__main__``: the ``python -m fomm_live`` entry) sit above every layer.
PACKAGE = "fomm_live"
LAYERS = ("common", "kernels", "models", "live", "benchmarks")
MAX_LINES = 400
MAX_LIVE_ROOT_MODULES = 16  # .py files directly in fomm_live/live/, besides __init__.py and __main__.py
# The names a backend or model object goes by; no getattr/hasattr may take one as its first argument under live/.
PROBED_NAMES = ("backend", "self.backend", "self._backend", "model")


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` (module names) at ``line`` of the source file."""

    source: str
    target: str
    line: int


def module_files(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Module name -> file, for every .py file under the given top-level packages (``a/__init__.py`` is ``a``)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module that ``import name`` loads last: the longest prefix of ``name`` that is a module."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _import_module_name(node: ast.Call) -> str | None:
    """``"x.y"`` of ``importlib.import_module("x.y")`` / ``import_module("x.y")`` / ``__import__("x.y")``."""
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    if called in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str):
        return node.args[0].value
    return None


def import_edges(modules: dict[str, Path]) -> list[Edge]:
    """Every import between the given modules (see the module docstring for what counts)."""
    edges: set[Edge] = set()
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        package = module if _is_package(path) else module.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str | None] = []
            if isinstance(node, ast.Import):
                targets = [_resolve(alias.name, modules) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: level 1 is this file's package, each level more one package up
                    parts = package.split(".")
                    if node.level > len(parts):
                        raise AssertionError(f"{path}:{node.lineno}: relative import beyond the top package")
                    full = ".".join([*parts[:len(parts) - node.level + 1], *([node.module] if node.module else [])])
                else:
                    full = node.module or ""
                for alias in node.names:
                    submodule = f"{full}.{alias.name}"
                    if alias.name != "*" and submodule in modules:
                        targets.append(submodule)
                    else:
                        targets.append(_resolve(full, modules))
            elif isinstance(node, ast.Call) and (name := _import_module_name(node)):
                targets = [_resolve(name, modules)]
            for target in targets:
                if target is not None and target != module:
                    edges.add(Edge(module, target, node.lineno))
    return sorted(edges, key=lambda e: (e.source, e.line, e.target))


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def find_cycles(edges: list[Edge]) -> list[list[Edge]]:
    """Import cycles: for every file caught in one, the shortest cycle through it (each cycle listed once, starting
    at its first file by name). Files in a cycle are exactly those of a strongly connected component of two or
    more, so none is missed."""
    graph: dict[str, set[str]] = {}
    first: dict[tuple[str, str], Edge] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
        key = (edge.source, edge.target)
        if key not in first or edge.line < first[key].line:
            first[key] = edge
    cycles: dict[tuple[str, ...], list[Edge]] = {}
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        members = set(component)
        for start in component:
            # Breadth-first from start back to start, inside the component: the shortest cycle through it.
            previous: dict[str, str] = {}
            queue = deque([start])
            found = None
            while queue and found is None:
                node = queue.popleft()
                for child in sorted(graph[node] & members):
                    if child == start:
                        found = node
                        break
                    if child not in previous:
                        previous[child] = node
                        queue.append(child)
            path = [start]
            node = found
            while node != start:
                path.insert(1, node)
                node = previous[node]
            rotation = path.index(min(path))
            path = path[rotation:] + path[:rotation]
            cycles[tuple(path)] = [first[(a, b)] for a, b in zip(path, path[1:] + path[:1], strict=True)]
    return [cycles[key] for key in sorted(cycles)]


def _is_cli(module: str) -> bool:
    return module == f"{PACKAGE}.live.cli" or module.startswith(f"{PACKAGE}.live.cli.")


def layer_of(module: str) -> str | None:
    """The layer (``PACKAGE.<layer>...``) a module belongs to; None for the package's own root modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def layer_violations(edges: list[Edge], layers: tuple[str, ...] = LAYERS) -> list[Edge]:
    """Imports from a lower layer into a higher one; the CLI (``live.cli``, ``live/cli/``) may import benchmarks."""
    rank = {name: i for i, name in enumerate(layers)}
    rank[None] = len(layers)  # the package's root modules: above every layer
    bad = []
    for edge in edges:
        source, target = rank[layer_of(edge.source)], rank[layer_of(edge.target)]
        if target > source and not (_is_cli(edge.source) and layer_of(edge.target) == "benchmarks"):
            bad.append(edge)
    return sorted(bad, key=lambda e: (e.source, e.line, e.target))


def long_files(modules: dict[str, Path], limit: int = MAX_LINES) -> list[tuple[Path, int]]:
    """Files over ``limit`` lines, with their line counts."""
    counts = [(path, len(path.read_text(encoding="utf-8").splitlines())) for path in modules.values()]
    return sorted((path, n) for path, n in counts if n > limit)


def _where(module: str, modules: dict[str, Path], root: Path) -> str:
    return modules[module].relative_to(root).as_posix()


def describe_cycle(cycle: list[Edge], modules: dict[str, Path], root: Path) -> str:
    """``a.py:12 -> b.py:40 -> a.py``: each file with the line of its import of the next."""
    chain = " -> ".join(f"{_where(e.source, modules, root)}:{e.line}" for e in cycle)
    return f"{chain} -> {_where(cycle[0].source, modules, root)}"


@pytest.fixture(scope="module")
def house() -> tuple[dict[str, Path], list[Edge]]:
    modules = module_files(ROOT, (PACKAGE,))
    return modules, import_edges(modules)


def test_no_import_cycles_between_files(house: tuple[dict[str, Path], list[Edge]]) -> None:
    modules, edges = house
    assert len(edges) > 50, f"only {len(edges)} imports found between project files: the scan is broken"
    cycles = find_cycles(edges)
    if cycles:
        pytest.fail(f"{len(cycles)} import cycles (file:line of each import):\n" + "\n".join(
            describe_cycle(cycle, modules, ROOT) for cycle in cycles), pytrace=False)


def test_imports_run_one_way_kernels_models_live_benchmarks(house: tuple[dict[str, Path], list[Edge]]) -> None:
    modules, edges = house
    bad = layer_violations(edges)
    if bad:
        pytest.fail(f"{len(bad)} imports against the layers {' < '.join(LAYERS)} (only the CLI may import "
                    "benchmarks):\n" + "\n".join(f"{_where(e.source, modules, ROOT)}:{e.line} imports "
                                                  f"{_where(e.target, modules, ROOT)}" for e in bad), pytrace=False)


def test_no_file_over_400_lines(house: tuple[dict[str, Path], list[Edge]]) -> None:
    modules, _ = house
    long = long_files(modules)
    if long:
        pytest.fail(f"{len(long)} files over {MAX_LINES} lines (one job per file):\n" + "\n".join(
            f"{path.relative_to(ROOT).as_posix()}: {n} lines" for path, n in long), pytrace=False)



def imports_of_test_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a test module (``test_*``) in ``path``: shared test code lives in helper
    modules (``tests/helpers/``, ``conftest.py``), so that running or changing one test module never runs another's
    module-level code."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[-1].startswith("test_")]
    return found


def test_no_test_module_imports_another() -> None:
    files = sorted((ROOT / "tests").rglob("*.py"))
    assert len(files) > 30, f"only {len(files)} files under tests/: the scan is broken"
    bad = [f"{path.relative_to(ROOT).as_posix()}:{line} imports {name}" for path in files
           for line, name in imports_of_test_modules(path)]
    if bad:
        pytest.fail(f"{len(bad)} imports of a test module (move what they share to tests/helpers/):\n" +
                    "\n".join(bad), pytrace=False)


def test_checker_finds_every_form_of_a_test_module_import(tmp_path: Path) -> None:
    path = tmp_path / "test_x.py"
    path.write_text("import os\nfrom helpers.clips import portrait\nfrom test_a import b\n"
                    "def f():\n    import test_c, json\n    from tests.test_d import e\n", encoding="utf-8")
    assert imports_of_test_modules(path) == [(3, "test_a"), (5, "test_c"), (6, "tests.test_d")]

# -- the checker itself, on made-up files ------------------------------------------------------------------------
def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return module_files(root, tuple(sorted({name.split("/")[0] for name in files})))


def _cycles(root: Path, files: dict[str, str]) -> list[str]:
    modules = _write(root, files)
    return [describe_cycle(c, modules, root) for c in find_cycles(import_edges(modules))]


def test_checker_finds_a_module_level_cycle_through_a_submodule_import(tmp_path: Path) -> None:
    found = _cycles(tmp_path, {"p/__init__.py": "",
                               "p/x.py": "import os\nfrom p import y\n",  # y is a submodule: an edge to p/y.py
                               "p/y.py": "from p.x import f\n"})
    assert found == ["p/x.py:2 -> p/y.py:1 -> p/x.py"]


def test_checker_finds_a_cycle_closed_by_a_lazy_relative_import(tmp_path: Path) -> None:
    found = _cycles(tmp_path, {"q/__init__.py": "",
                               "q/m.py": "def f():\n    from . import n\n    return n\n",
                               "q/n.py": "import q.m\n",
                               "q/sub/__init__.py": "",
                               "q/sub/o.py": "def g():\n    from ..n import z\n"})  # an edge out, not a cycle
    assert found == ["q/m.py:2 -> q/n.py:1 -> q/m.py"]


def test_checker_passes_a_package_init_reexport_and_flags_an_import_from_the_init(tmp_path: Path) -> None:
    # a/__init__ re-exports from a/b, which imports a sibling: no cycle (the __init__ running first is not an edge).
    assert _cycles(tmp_path, {"a/__init__.py": "from a.b import X\n", "a/b.py": "import a.c\nX = 1\n",
                              "a/c.py": "Y = 2\n"}) == []
    # r/b takes a name from its package's __init__, which imports r/b: a cycle.
    assert _cycles(tmp_path, {"r/__init__.py": "from r.b import X\nY = 1\n", "r/b.py": "from r import Y\nX = 2\n"}) \
        == ["r/__init__.py:1 -> r/b.py:1 -> r/__init__.py"]


def test_checker_lists_every_cycle_and_the_layer_breaks(tmp_path: Path) -> None:
    files = {
        "__init__.py": "", "__main__.py": "from fomm_live.live import cli\n",  # the root may import any layer
        "kernels/__init__.py": "", "kernels/k.py": "import importlib\nimportlib.import_module('fomm_live.models.m')\n",
        "models/__init__.py": "", "models/m.py": "from fomm_live.models import n, o\n",
        "models/n.py": "from .m import q\n",
        "models/o.py": "def f():\n    import fomm_live.models.m\n",  # a second cycle through models/m.py
        "live/__init__.py": "", "live/cli.py": "from fomm_live.benchmarks import b\n",
        "live/x.py": "import fomm_live.benchmarks.b\n",
        "live/y.py": "from fomm_live.live import z\n", "live/z.py": "def f():\n    import fomm_live.live.y\n",
        "benchmarks/__init__.py": "", "benchmarks/b.py": "import fomm_live.live.x, fomm_live.kernels.k\n",
        "common/__init__.py": "", "common/c.py": "import fomm_live.__main__\n"}  # nothing may import the root
    modules = _write(tmp_path, {f"{PACKAGE}/{name}": text for name, text in files.items()})
    edges = import_edges(modules)
    assert [describe_cycle(c, modules, tmp_path / PACKAGE) for c in find_cycles(edges)] == [
        "benchmarks/b.py:1 -> live/x.py:1 -> benchmarks/b.py",
        "live/y.py:1 -> live/z.py:2 -> live/y.py",
        "models/m.py:1 -> models/n.py:1 -> models/m.py",
        "models/m.py:1 -> models/o.py:2 -> models/m.py"]
    assert [(e.source, e.target, e.line) for e in layer_violations(edges)] == [  # live/cli.py may import benchmarks
        ("fomm_live.common.c", "fomm_live.__main__", 1), ("fomm_live.kernels.k", "fomm_live.models.m", 2),
        ("fomm_live.live.x", "fomm_live.benchmarks.b", 1)]
    assert [(p.relative_to(tmp_path / PACKAGE).as_posix(), n) for p, n in long_files(modules, limit=1)] == [
        ("kernels/k.py", 2), ("live/z.py", 2), ("models/o.py", 2)]


# -- rooms and declared contracts --------------------------------------------------------------------------------
def root_modules(package: Path) -> list[str]:
    """The .py files directly in ``package``, besides ``__init__.py`` and ``__main__.py``."""
    return sorted(p.name for p in package.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))


def probes(paths: list[Path], names: tuple[str, ...] = PROBED_NAMES) -> list[str]:
    """``file:line getattr(name, ...)`` for every ``getattr``/``hasattr`` call whose first argument is one of
    ``names`` (a plain name or ``self.x``)."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr") and node.args
                    and ast.unparse(node.args[0]) in names):
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    return found


def test_live_keeps_at_most_16_modules_at_its_root_and_every_room_says_what_it_owns() -> None:
    live = ROOT / PACKAGE / "live"
    modules = root_modules(live)
    assert len(modules) <= MAX_LIVE_ROOT_MODULES, (
        f"{len(modules)} modules directly in live/ (at most {MAX_LIVE_ROOT_MODULES}: group the rest into rooms by "
        f"purpose): {modules}")
    for room in sorted(p for p in live.iterdir() if p.is_dir() and p.name != "assets" and any(p.glob("*.py"))):
        init = room / "__init__.py"
        assert init.is_file(), f"live/{room.name}/ has no __init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "may import" in doc.lower(), f"live/{room.name}/__init__.py does not say what the room may import"


def test_no_backend_is_probed_for_what_it_can_do_under_live() -> None:
    found = probes(sorted((ROOT / PACKAGE / "live").rglob("*.py")))
    assert not found, "backends are probed instead of read from their declared fields:\n" + "\n".join(found)


def test_the_room_and_probe_checks_catch_what_they_should(tmp_path: Path) -> None:
    for i in range(MAX_LIVE_ROOT_MODULES + 1):
        (tmp_path / f"m{i}.py").write_text("", encoding="utf-8")
    (tmp_path / "__init__.py").write_text("", encoding="utf-8")
    assert len(root_modules(tmp_path)) == MAX_LIVE_ROOT_MODULES + 1
    probed = tmp_path / "probe.py"
    probed.write_text("def f(backend, model, other):\n    getattr(backend, 'x', None)\n    hasattr(model, 'y')\n"
                      "    getattr(other, 'z')\n    getattr(self.backend, 'w')\n", encoding="utf-8")
    assert probes([probed]) == ["probe.py:2 getattr(backend, 'x', None)", "probe.py:3 hasattr(model, 'y')",
                                "probe.py:5 getattr(self.backend, 'w')"]
