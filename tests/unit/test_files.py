import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from imganalyzer.files import (
    _HOST,
    atomic_directory,
    atomic_open,
    atomic_write_text,
    process_running,
    share_like_umask,
    temporary_file,
)


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
    dead = _dead_pid()
    (tmp_path / f".a.txt.{_HOST}-{dead}.x1.tmp").write_text("partial")
    (tmp_path / f".store.zarr.{_HOST}-{dead}.x2.tmp").mkdir()
    (tmp_path / f".other.txt.{_HOST}-{dead}.x3.tmp").write_text("someone else's")
    atomic_write_text(tmp_path / "a.txt", "done")
    with atomic_directory(tmp_path / "store.zarr"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".other.txt.{_HOST}-{dead}.x3.tmp",
        "a.txt",
        "store.zarr",
    ]


def test_a_live_writers_temporaries_are_never_swept(tmp_path: Path) -> None:
    """Another run (another process, here or on another host) writing the same file."""
    with subprocess.Popen(["sleep", "30"]) as live:
        try:
            mine = tmp_path / f".a.txt.{_HOST}-{live.pid}.x1.tmp"
            mine.write_text("being written")
            recent = tmp_path / ".a.txt.othernode-123.x2.tmp"
            recent.write_text("being written elsewhere")
            old = tmp_path / ".a.txt.othernode-124.x3.tmp"
            old.write_text("left by a lost node")
            week_ago = time.time() - 7 * 86400
            os.utime(old, (week_ago, week_ago))
            atomic_write_text(tmp_path / "a.txt", "done")
            assert mine.exists() and recent.exists() and not old.exists()
        finally:
            live.kill()


def test_a_killed_writer_left_a_zombie_is_gone(tmp_path: Path) -> None:
    """kill -9 of a run whose PID 1 does not reap orphans (a container): the killed job
    stays a zombie, which os.kill(pid, 0) still finds; its temporaries are swept all the same."""
    with subprocess.Popen(["sleep", "0"]) as zombie:
        deadline = time.monotonic() + 10
        while _state(zombie.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)  # exited, not yet waited for: a zombie
        assert _state(zombie.pid) == "Z"
        assert not process_running(zombie.pid)
        left = tmp_path / f".a.txt.{_HOST}-{zombie.pid}.x1.tmp"
        left.write_text("partial")
        atomic_write_text(tmp_path / "a.txt", "done")
        assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert process_running(os.getpid())


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"),
    [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700), (0o002, 0o664, 0o775)],
)
def test_outputs_get_the_umask_permissions(
    tmp_path: Path, umask: int, file_mode: int, dir_mode: int
) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_directory(tmp_path / "store.zarr") as folder:
            (folder / "inner").write_text("y")
        kept = temporary_file(tmp_path / "m.npy")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == file_mode
    assert stat.S_IMODE((tmp_path / "store.zarr").stat().st_mode) == dir_mode
    assert stat.S_IMODE(os.stat(kept).st_mode) == file_mode


def _dead_pid() -> int:
    with subprocess.Popen(["true"]) as gone:
        gone.wait()
    return gone.pid


def test_share_like_umask_opens_a_private_tree(tmp_path: Path) -> None:
    folder = tmp_path / "tantivy"
    (folder / "sub").mkdir(parents=True)
    (folder / ".managed.json").write_text("{}")
    (folder / ".managed.json").chmod(0o600)
    folder.chmod(0o700)
    old = os.umask(0o022)
    try:
        share_like_umask(folder)
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / ".managed.json").stat().st_mode) == 0o644
