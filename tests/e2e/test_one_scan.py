"""One scan of the library per workflow run: the catalog plan's view (run/library.tsv) is
what the global steps (duplicates, index, xmp) read; none of them lists the library again.

Every Python process of the run (Snakemake and each job's script) gets an audit hook, through
a ``sitecustomize`` on PYTHONPATH, that logs each listing of the library's root folder (a
scan starts there)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from imganalyzer.catalog.current import LibraryView
from imganalyzer.layout import Layout
from imganalyzer.search.index import open_index

from .conftest import Workspace, build_test_library, make_workspace

pytestmark = pytest.mark.slow

SCAN_LOG = "IMGANALYZER_TEST_SCAN_LOG"
HOOK = f'''
import os, sys

def _log_library_scans(event, args):
    if event in ("os.scandir", "os.listdir") and args and isinstance(args[0], (str, bytes)):
        if os.path.realpath(os.fsdecode(args[0])) == os.environ["IMGANALYZER_TEST_LIBRARY"]:
            with open(os.environ["{SCAN_LOG}"], "a") as log:
                log.write(f"{{os.getpid()}} {{' '.join(sys.argv[:2])}}\\n")

if os.environ.get("{SCAN_LOG}"):
    sys.addaudithook(_log_library_scans)
'''


@pytest.fixture
def audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Workspace, Path]:
    ws = make_workspace(
        tmp_path / "ws", modules=["metadata", "technical", "duplicates"], xmp={"enabled": True}
    )
    ws.files = build_test_library(ws.library)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    scans = tmp_path / "scans.log"
    monkeypatch.setenv(SCAN_LOG, str(scans))
    monkeypatch.setenv("IMGANALYZER_TEST_LIBRARY", os.path.realpath(ws.library))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(hook), path])))
    return ws, scans


def scans_of(log: Path) -> list[str]:
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def photos(ws: Workspace) -> set[str]:
    return {p.relative_to(ws.library).as_posix() for p in ws.library.rglob("*") if p.is_file()}


def seen_by_the_steps(ws: Workspace) -> dict[str, set[str]]:
    """The images each global step worked on."""
    layout = Layout(ws.results)
    searcher = open_index(layout.index).searcher()
    groups = json.loads(layout.duplicate_groups.read_text())
    sidecars = layout.xmp_sidecars
    return {
        "view": set(LibraryView.read(layout.library_view).current),
        "xmp": {str(p.relative_to(sidecars))[: -len(".xmp")] for p in sidecars.rglob("*.xmp")},
        "index": {str(n) for n in [searcher.num_docs]},
        "duplicates": {str(groups["stats"]["images"])},
    }


def test_a_run_scans_the_library_once_and_every_step_sees_that_scan(
    audited: tuple[Workspace, Path],
) -> None:
    ws, log = audited
    ws.snakemake()
    first = scans_of(log)
    assert len(first) == 1, first  # the catalog plan, in Snakemake's main process
    seen = seen_by_the_steps(ws)
    assert seen["view"] == photos(ws)
    readable = {p for p in seen["view"] if not p.startswith("bad/")}  # no sidecar for those
    assert seen["xmp"] == readable
    assert seen["index"] == seen["duplicates"] == {str(len(seen["view"]))}

    # nothing changed: a dry run plans (one scan) and finds nothing to do
    dry = ws.snakemake("-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    assert len(scans_of(log)) == 1
    assert not Layout(ws.results).staged_library_view.exists()  # a dry run writes nothing

    # a photo removed: the view changes, the global steps re-run on it, still one scan
    gone = "2023/trip/paris_blurred.jpg"
    (ws.library / gone).unlink()
    ws.snakemake()
    assert len(scans_of(log)) == 1
    after = seen_by_the_steps(ws)
    assert after["view"] == photos(ws) == seen["view"] - {gone}
    assert after["index"] == after["duplicates"] == {str(len(after["view"]))}
    assert not Layout(ws.results).staged_library_view.exists()  # placed by library_view
