"""Atomic file output: every result is written under a temporary name and renamed into place.

Temporaries are named ``.<name>.<host>-<pid>.<random>.tmp`` so that a writer can tell a
killed writer's leftovers (sweep them) from a live writer's (never touch them), and they
get the permissions the umask gives a plain new file (0644 / 0755 under umask 022), not
``mkstemp``'s private 0600 / 0700: results are shared with other users and cluster jobs.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

# A temporary from another host is swept once it is this old (its writer cannot be asked).
FOREIGN_TEMPORARY_AGE_S = 6 * 3600
_HOST = socket.gethostname().replace(".", "_").replace("-", "_")


def current_umask() -> int:
    """The process umask, read without changing it (Linux), else set and restored."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}-{os.getpid()}."


def temporary_file(path: str | os.PathLike) -> str:
    """A new empty temporary file beside ``path`` (closed), with umask permissions."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
    finally:
        os.close(fd)
    return tmp


def process_running(pid: int) -> bool:
    """Whether process ``pid`` runs on this host. A zombie does not: a killed job whose
    parent died too stays one where PID 1 does not reap orphans (containers, some VMs)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process of another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill's answer stands
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _writer_is_gone(stale: Path, name: str) -> bool:
    """Whether the writer of the temporary ``stale`` of ``name`` is dead (never sweep a live
    writer's file): same host -> its pid is not running; other host -> older than a limit."""
    writer = stale.name[len(name) + 2 :].split(".", 1)[0]
    host, _, pid = writer.rpartition("-")
    if host == _HOST and pid.isdigit():
        return int(pid) != os.getpid() and not process_running(int(pid))
    try:
        return time.time() - stale.lstat().st_mtime > FOREIGN_TEMPORARY_AGE_S
    except FileNotFoundError:
        return False


def remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of ``path`` left by a writer that was killed (kill -9, node lost).

    Temporaries whose writer may still be running (a live pid on this host, or a recent
    file from another host) are left alone: only a dead writer's are swept.
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if not _writer_is_gone(stale, path.name):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and rename it onto ``path``.

    On error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = temporary_file(path)
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(text)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success rename it onto ``path``.

    An existing ``path`` is replaced. On error the temporary directory is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temporary_prefix(path), suffix=".tmp"))
    try:
        tmp.chmod(0o777 & ~current_umask())
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def share_like_umask(folder: str | os.PathLike[str]) -> None:
    """Give ``folder`` and everything in it the permissions the umask gives new files and
    folders, for writers that use private modes of their own (Tantivy writes 0600 files)."""
    mask = current_umask()
    for root, _dirs, files in os.walk(folder):
        os.chmod(root, 0o777 & ~mask)
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # Tantivy may delete meanwhile
                os.chmod(os.path.join(root, name), 0o666 & ~mask)


def file_digest(path: str | os.PathLike) -> str:
    """blake2b of a small file's bytes; "" when it does not exist."""
    try:
        return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()
    except FileNotFoundError:
        return ""
