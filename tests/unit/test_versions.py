"""The stages' version strings: read by the workflow at every parse, so importing them must
cost nothing (no package module, no third-party library)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from imganalyzer import versions

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_versions_loads_no_other_module_of_the_package_or_a_library() -> None:
    code = (
        "import sys; before = set(sys.modules); import imganalyzer.versions; "
        "print(sorted(set(sys.modules) - before))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    assert ast.literal_eval(loaded) == ["imganalyzer", "imganalyzer.versions"]


def test_the_decode_version_names_the_technical_and_tier_versions_it_depends_on() -> None:
    assert f"technical-{versions.TECHNICAL_VERSION}" in versions.DECODE_VERSION
    assert f"tiers-{versions.TIER_FORMAT_VERSION}" in versions.DECODE_VERSION
    assert all(
        isinstance(value, str) and value
        for name, value in vars(versions).items()
        if name.endswith("_VERSION")
    )
