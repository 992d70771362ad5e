"""Layout: every path under a results folder, and a check that nobody else joins them.

The check reads the package and the scripts with ``ast`` and the rules as text: a path
joined onto a folder with a name the Layout owns (``x / "tiers"``, ``joinpath("catalog",
...)``, ``folder / f"{shard}.jsonl"``) or a results folder derived from an output
(``Path(output).parent.parent``) fails it, naming the file and line.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from imganalyzer import layout as layout_module
from imganalyzer.layout import IndexFiles, Layout
from imganalyzer.runtime.registry import MODELS

ROOT = Path(__file__).resolve().parents[2]
SHARD, JOB = "000001-00000", "000001-00000-00003"
# Every folder a module writes under results.
MODULES = sorted({"technical", "metadata", "duplicates", "xmp", *MODELS})
SAMPLE_ARGS = {
    "shard": SHARD,
    "job": JOB,
    "batch": "000002",
    "step": "a-step",
    "name": "a-name",
    "person_id": "7",
}

# Legitimate joins that read like results paths, each with why ("path::text" as above).
ALLOWED = {
    "imganalyzer/layout.py",  # the Layout itself (and IndexFiles, the files of an index)
    "Snakefile::workflow.basedir",  # the workflow's own config.yaml, not the run's
}


# ------------------------------------------------------------------ the Layout itself


def every_path(layout: Layout) -> list[Path]:
    """Every path a Layout (and its index folder) names, for sample ids and every module."""
    paths = []
    for owner in (layout, layout.index_files):
        for name, member in inspect.getmembers(type(owner)):
            if name.startswith("_") or name in ("of_job_summary", "of_rows", "failure_records"):
                continue
            if isinstance(member, property):
                value = getattr(owner, name)
                paths += list(value) if isinstance(value, tuple) else [value]
            elif inspect.isfunction(member):
                paths += _calls(getattr(owner, name))
    return [p for p in paths if isinstance(p, Path)]


def _calls(method) -> list:  # noqa: ANN001
    params = list(inspect.signature(method).parameters)
    if params and params[0] == "module":
        modules = [m for m in MODELS if MODELS[m].array] if method.__name__ == "array" else MODULES
        return [method(m, *(SAMPLE_ARGS[p] for p in params[1:])) for m in modules]
    return [method(*(SAMPLE_ARGS[p] for p in params))]


def owned_names() -> tuple[set[str], set[str]]:
    """(folder and file names the Layout owns, the suffixes of its per-id files)."""
    root = Path("/results")
    names, suffixes = set(), set()
    for path in every_path(Layout(root)):
        for part in path.relative_to(root).parts:
            ids = [v for v in SAMPLE_ARGS.values() if part.startswith(v)]
            if ids:
                suffixes.add(part[len(max(ids, key=len)) :])  # "" for a step's folder
            else:
                names.add(part)
    return names, suffixes - {""}


def test_paths_of_a_shard_and_a_job() -> None:
    layout = Layout("/r")
    assert layout.manifest(SHARD) == Path(f"/r/catalog/shards/{SHARD}.tsv")
    assert layout.staged_manifest(SHARD) == Path(f"/r/catalog/staged/{SHARD}.tsv")
    assert layout.tiers(SHARD) == Path(f"/r/tiers/{SHARD}.zarr")
    assert layout.thumbnails(SHARD) == Path(f"/r/thumbnails/{SHARD}.zip")
    assert layout.technical(SHARD) == layout.rows("technical", SHARD)
    assert layout.array("faces", SHARD) == Path(f"/r/faces/{SHARD}.npy")
    assert layout.job_summary("ocr", JOB) == Path(f"/r/ocr/jobs/{JOB}.json")
    assert layout.job_failure("ocr", JOB) == Path(f"/r/ocr/failed/{JOB}.json")
    assert layout.log("decode", SHARD) == Path(f"/r/logs/decode/{SHARD}.log")
    assert layout.benchmark("decode", SHARD) == Path(f"/r/benchmarks/decode/{SHARD}.tsv")
    assert layout.index_files.state == Path("/r/index/state.json")
    assert layout.library_view == Path("/r/run/library.tsv")


def test_any_model_modules_array_lies_beside_its_rows() -> None:
    # a module added by one file and its registry entry needs no Layout edit
    assert Layout("/r").array("toy", SHARD) == Path(f"/r/toy/{SHARD}.npy")


@pytest.mark.parametrize("method", ["manifest", "tiers", "thumbnails", "technical"])
def test_a_snakemake_wildcard_passes_through(method: str) -> None:
    layout = Layout("/r")
    pattern = str(getattr(layout, method)("{shard}"))
    assert "{shard}" in pattern
    assert pattern.format(shard=SHARD) == str(getattr(layout, method)(SHARD))
    job = str(layout.job_summary("embedding", "{job}"))
    assert job.format(job=JOB) == str(layout.job_summary("embedding", JOB))


def test_a_job_summary_names_its_results_module_and_job() -> None:
    layout = Layout("/data/results")
    found = Layout.of_job_summary(layout.job_summary("aesthetic", JOB))
    assert found is not None
    assert (found[0].root, found[1:]) == (layout.root, ("aesthetic", JOB))
    assert Layout.of_job_summary(layout.rows("aesthetic", SHARD)) is None
    assert Layout.of_job_summary("/x/aesthetic/jobs/notes.txt") is None


def test_failure_records_are_found_in_every_module(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    for module in ("objects", "ocr"):
        layout.job_failure(module, JOB).parent.mkdir(parents=True)
        layout.job_failure(module, JOB).write_text("{}")
    assert layout.failure_records() == [layout.job_failure(m, JOB) for m in ("objects", "ocr")]


def test_an_index_folder_anywhere_has_the_same_files(tmp_path: Path) -> None:
    fresh = IndexFiles(tmp_path / "fresh")
    assert fresh.tantivy.parent == fresh.vectors.parent == tmp_path / "fresh"
    assert [p.name for p in fresh.vector_files] == [
        p.name for p in Layout(tmp_path).index_files.vector_files
    ]


def test_layouts_of_one_folder_are_equal() -> None:
    assert Layout("/r") == Layout(Path("/r")) and hash(Layout("/r")) == hash(Layout("/r/"))
    assert Layout("/r") != Layout("/s")


def test_the_docstring_tree_names_every_folder_and_file() -> None:
    """layout.py's docstring draws the results folder: it must name what Layout makes."""
    tree = layout_module.__doc__ or ""
    names, suffixes = owned_names()
    missing = sorted(n for n in names if n not in tree and n not in MODULES)
    assert not missing, f"layout.py's docstring tree does not name {missing}"
    assert all(s in tree for s in suffixes - {".log"}), suffixes


# ------------------------------------------------------------------ nobody else joins


class JoinFinder(ast.NodeVisitor):
    """Finds paths joined onto a folder with a name or per-id file the Layout owns."""

    def __init__(self, names: set[str], suffixes: set[str]) -> None:
        self.names, self.suffixes = names, suffixes
        self.constants: set[str] = set()  # module-level names bound to such a string
        self.found: list[tuple[int, str]] = []

    def check(self, tree: ast.Module) -> list[tuple[int, str]]:
        for node in tree.body:
            if isinstance(node, ast.Assign) and self._owned(node.value):
                self.constants |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        self.visit(tree)
        return self.found

    def _owned(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value.split("/")[0] in self.names
        if isinstance(node, ast.JoinedStr):  # f"{shard}.jsonl": a per-id file
            last = node.values[-1] if node.values else None
            has_field = any(isinstance(v, ast.FormattedValue) for v in node.values)
            return (
                has_field
                and isinstance(last, ast.Constant)
                and any(str(last.value).endswith(s) for s in self.suffixes)
            )
        return isinstance(node, ast.Name) and node.id in self.constants

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if isinstance(node.op, ast.Div) and self._owned(node.right):
            self.found.append((node.lineno, ast.unparse(node)))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = ast.unparse(node.func)
        if func.endswith("joinpath"):
            joined = node.args
        elif func in ("Path", "PurePath", "pathlib.Path", "os.path.join"):
            joined = node.args[1:]
        else:
            joined = []
        if any(self._owned(arg) for arg in joined):
            self.found.append((node.lineno, ast.unparse(node)))
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        # a results folder derived from an output file: Path(output).parent.parent
        value = node.value
        if node.attr == "parent" and isinstance(value, ast.Attribute) and value.attr == "parent":
            self.found.append((node.lineno, ast.unparse(node)))
            return
        self.generic_visit(node)


def hand_joins(source: str) -> list[tuple[int, str]]:
    return JoinFinder(*owned_names()).check(ast.parse(source))


# Paths joined by hand in the rules: results_path(...), RESULTS / ..., a joinpath or an
# output's .parent.parent.
SMK_JOIN = re.compile(
    r"results_path\(|\bRESULTS\s*/|\.joinpath\(|os\.path\.join\(|\.parent\.parent"
    r"|Path\(config\[.results.\]\)\s*/"
)


def exempt(relative: str, line: str) -> bool:
    for entry in ALLOWED:
        path, _, text = entry.partition("::")
        if path == relative and (not text or text in line):
            return True
    return False


def python_sources() -> list[Path]:
    return sorted((ROOT / "imganalyzer").rglob("*.py")) + sorted((ROOT / "scripts").glob("*.py"))


def test_no_result_path_is_joined_outside_the_layout() -> None:
    problems = []
    for path in python_sources():
        relative = path.relative_to(ROOT).as_posix()
        lines = path.read_text(encoding="utf-8").splitlines()
        for number, code in hand_joins(path.read_text(encoding="utf-8")):
            if not exempt(relative, lines[number - 1]):
                problems.append(f"{relative}:{number}: {code}")
    rules = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    for path in rules:
        relative = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SMK_JOIN.search(line) and not exempt(relative, line):
                problems.append(f"{relative}:{number}: {line.strip()}")
    assert not problems, "paths under results joined by hand (ask Layout):\n" + "\n".join(problems)


@pytest.mark.parametrize(
    "source",
    [
        'Path(results) / "faces"',
        'results / "catalog" / "shards"',
        'out / f"{shard}.jsonl"',
        'folder / f"{job}.json"',
        'root.joinpath("tiers", name)',
        'os.path.join(results, "index")',
        'Path(results, "xmp")',
        'NAME = "people.json"\nfolder / NAME',
        'index_dir / "tantivy"',
        "Path(output[0]).parent.parent",
    ],
)
def test_the_check_finds_a_hand_joined_path(source: str) -> None:
    assert hand_joins(source), source


@pytest.mark.parametrize(
    "source",
    [
        'HERE / "static"',  # the web page's own files
        'out / f"{module}.{fmt}"',  # an export's output tables
        'out / "embeddings.npy"',
        'Path(cache) / "open_clip"',  # a model cache
        'path.with_suffix(".xmp")',  # a sidecar beside its image
        'layout.rows("faces", shard)',
        'package.joinpath("countries.csv")',
    ],
)
def test_the_check_leaves_other_joins_alone(source: str) -> None:
    assert not hand_joins(source), source


def test_the_temporary_exemptions_name_existing_files() -> None:
    for entry in ALLOWED:
        assert (ROOT / entry.partition("::")[0]).is_file(), entry
