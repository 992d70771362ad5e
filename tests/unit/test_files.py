from pathlib import Path

import pytest

from imganalyzer.files import atomic_directory, atomic_open, atomic_write_text


def test_atomic_write_replaces_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("partial")
        raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_directory_appears_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "store.zarr"
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "x").write_text("1")
        raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with atomic_directory(target) as tmp:
        (tmp / "x").write_text("1")
    assert (target / "x").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["store.zarr"]


def test_a_killed_writers_temporaries_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    (tmp_path / ".a.txt.x1.tmp").write_text("partial")
    (tmp_path / ".store.zarr.x2.tmp").mkdir()
    (tmp_path / ".other.txt.x3.tmp").write_text("someone else's")
    atomic_write_text(tmp_path / "a.txt", "done")
    with atomic_directory(tmp_path / "store.zarr"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".other.txt.x3.tmp",
        "a.txt",
        "store.zarr",
    ]
