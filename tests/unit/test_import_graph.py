"""The package's imports point one way, read from the source with ``ast`` (nothing imported):

- between modules: no circle;
- between layers: a subpackage or top-level module imports only from the layers below
  its own (``LAYERS``), so the data flow catalog -> decode -> runtime -> modules -> steps ->
  search -> web/cli holds; and the read side (search, web) never imports the job machinery
  (``NEVER_IMPORTS``), only the registry's data (``READABLE_DATA``).

Every import counts: at module level, inside a function, and under ``if TYPE_CHECKING:``.
A type-only import still ties a lower layer to the definitions of a higher one (a change up
there breaks the type check down here); a lower layer that needs such a type declares a
``Protocol`` of its own. Imports through ``importlib`` are not seen (the package has none).
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "imganalyzer"

# Layers from the bottom up. A unit (a subpackage, or a module at the package's top level)
# may import its own unit and the units of the layers below its layer; units of one layer
# are independent of each other. Placed by what they import and who imports them:
LAYERS: list[frozenset[str]] = [
    # Shared vocabulary that imports nothing of the package: errors, atomic files, every
    # results path, progress lines, a bounded pool, image formats (extensions, sniffing), the
    # stages' version strings.
    frozenset({"errors", "files", "layout", "progress", "threadpool", "formats", "versions"}),
    frozenset({"results", "runlock"}),  # result rows (files), the results lock (layout)
    # The results store: rows, arrays, job summaries and failure records (results, layout).
    frozenset({"store"}),
    frozenset({"catalog"}),
    frozenset({"decode"}),
    frozenset({"runtime"}),
    # The validated config reads the registry (module names, model keys), so it sits above
    # runtime; low enough that modules and steps may take their settings from it.
    frozenset({"config"}),
    frozenset({"modules"}),
    frozenset({"steps"}),
    frozenset({"search"}),
    # The web app and the example library (which imports nothing of the package, but only
    # the command line may use it: no analysis code depends on generated files).
    frozenset({"web", "example"}),
    frozenset({"cli"}),
]

# Skips down the layers that are not allowed either: search and web read results (layout,
# results, catalog) and never the model-job machinery (job skeleton, job status files,
# weights); search loads a model only through its module (the CLIP text tower of embedding).
NEVER_IMPORTS: dict[str, frozenset[str]] = {
    "search": frozenset({"runtime"}),
    "web": frozenset({"runtime", "modules"}),
}
# Modules of those units that are data, not machinery: any layer above may read them.
READABLE_DATA = frozenset({"imganalyzer.runtime.registry"})  # model names, versions, fields

# Imports that break a layer today, each with the change that removes it. An exception that
# no longer occurs fails the test, so that it is deleted with the import it allowed.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str], package_root: Path = PACKAGE) -> set[str]:
    """The package modules ``path`` imports (a name that is not a module: its module)."""
    if path.name == "__init__.py":
        package = module_name(path, package_root)
    else:
        package = module_name(path.parent, package_root)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package modules it imports, for the package folder ``package``."""
    paths = {module_name(p, package): p for p in package.rglob("*.py")}
    modules = set(paths)
    graph = {}
    for name, path in paths.items():
        # a package's __init__ imported by its own modules is not a dependency of theirs
        graph[name] = {
            target
            for target in imported_modules(path, modules, package) - {name}
            if not (paths[target].name == "__init__.py" and name.startswith(target + "."))
        }
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def unit_of(module: str) -> str:
    """The layer unit of a module: ``imganalyzer.catalog.scan`` -> ``catalog``,
    ``imganalyzer.errors`` -> ``errors``; the package's own ``__init__`` -> ``imganalyzer``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(unit: str, layers: list[frozenset[str]] = LAYERS) -> int | None:
    return next((level for level, units in enumerate(layers) if unit in units), None)


def allowed(importer: str, target: str, layers: list[frozenset[str]] = LAYERS) -> bool:
    """Whether module ``importer`` may import module ``target``."""
    here, there = unit_of(importer), unit_of(target)
    if here == there or there == "imganalyzer":
        return True
    level_here, level_there = layer_of(here, layers), layer_of(there, layers)
    if level_here is None or level_there is None or level_there >= level_here:
        return False
    return there not in NEVER_IMPORTS.get(here, frozenset()) or target in READABLE_DATA


def backwards_imports(
    graph: dict[str, set[str]], layers: list[frozenset[str]] = LAYERS
) -> set[tuple[str, str]]:
    """(importer, imported) pairs whose import goes sideways or up the layers, or skips
    to a layer its unit must never import."""
    return {
        (importer, target)
        for importer, targets in graph.items()
        for target in targets
        if not allowed(importer, target, layers)
    }


def unplaced_units(graph: dict[str, set[str]], layers: list[frozenset[str]] = LAYERS) -> set[str]:
    """Units of the package that no layer names (the package's ``__init__`` aside)."""
    units = {unit_of(module) for module in graph} - {"imganalyzer"}
    return {unit for unit in units if layer_of(unit, layers) is None}


def test_the_package_has_no_import_circle() -> None:
    assert circles(import_graph()) == []


def test_the_check_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_subpackage_and_top_level_module_has_a_layer() -> None:
    assert unplaced_units(import_graph()) == set(), "add it to LAYERS where its imports allow"


def test_no_import_goes_up_or_sideways_between_layers() -> None:
    backwards = backwards_imports(import_graph())
    assert sorted(backwards - set(KNOWN_EXCEPTIONS)) == []
    assert sorted(set(KNOWN_EXCEPTIONS) - backwards) == [], "delete the exceptions that are gone"


@pytest.mark.parametrize(
    ("module", "added", "target"),
    [
        ("catalog/scan.py", "from imganalyzer.decode import readers", "decode.readers"),
        (
            "decode/readers.py",
            "def later():\n    from imganalyzer.search.query import Filters",
            "search.query",
        ),
        (
            "runtime/job.py",
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from imganalyzer.modules.faces import Face",
            "modules.faces",
        ),
        ("steps/xmp.py", "from ..web import view", "web.view"),
        ("errors.py", "import imganalyzer.config", "config"),
        ("web/view.py", "from imganalyzer.example import library", "example.library"),
        ("search/export.py", "from imganalyzer.runtime import weights", "runtime.weights"),
        (
            "web/data.py",
            "from imganalyzer.modules.embedding import ClipEmbedder",
            "modules.embedding",
        ),
    ],
    ids=[
        "module-level",
        "in-a-function",
        "type-checking",
        "relative",
        "shared-module",
        "sibling",
        "read-side-to-runtime",
        "web-to-modules",
    ],  # fmt: skip
)
def test_a_deliberate_backwards_import_is_found(
    tmp_path: Path, module: str, added: str, target: str
) -> None:
    copy = tmp_path / "imganalyzer"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert backwards_imports(import_graph(copy)) == set(KNOWN_EXCEPTIONS)
    path = copy / module
    path.write_text(path.read_text(encoding="utf-8") + "\n" + added + "\n", encoding="utf-8")
    found = backwards_imports(import_graph(copy)) - set(KNOWN_EXCEPTIONS)
    importer = module_name(path, copy)
    assert (importer, f"imganalyzer.{target}") in found
    assert {source for source, _ in found} == {importer}


def test_a_new_unit_without_a_layer_is_reported(tmp_path: Path) -> None:
    copy = tmp_path / "imganalyzer"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "plugins").mkdir()
    (copy / "plugins" / "__init__.py").write_text("from imganalyzer.errors import ConfigError\n")
    graph = import_graph(copy)
    assert unplaced_units(graph) == {"plugins"}
    assert ("imganalyzer.plugins", "imganalyzer.errors") in backwards_imports(graph)


def test_the_read_side_may_read_the_registry_but_not_the_job_machinery() -> None:
    graph = {
        "imganalyzer.search.documents": {"imganalyzer.runtime.registry"},
        "imganalyzer.web.data": {"imganalyzer.runtime.registry", "imganalyzer.runtime.job"},
        "imganalyzer.runtime.registry": set(),
        "imganalyzer.runtime.job": set(),
    }
    assert backwards_imports(graph) == {("imganalyzer.web.data", "imganalyzer.runtime.job")}
