"""The catalog tests' library: a few empty image files of different kinds and folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def touch(path: Path, data: bytes = b"x", mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


@pytest.fixture
def library(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    for name in ["a.jpg", "b.JPEG", "sub/c.heic", "sub/deeper/d.CR3", "e.png", "f.dng"]:
        touch(lib / name)
    return lib
