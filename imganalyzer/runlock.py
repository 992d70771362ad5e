"""One lock per results folder, held by the run that writes it.

Snakemake's own lock lives in the working folder's ``.snakemake/``: two runs started from
different folders on the same results folder would both write (and sweep each other's
temporaries). This lock is ``<results>/.imganalyzer-run.lock``: an ``flock`` held for the
life of the process, with the holder (pid, host, start time, working folder, command)
written in the file, so that a second run stops with a message naming the first.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from imganalyzer.layout import Layout

_HELD: dict[str, int] = {}  # realpath of the lock file -> its open descriptor


class ResultsLocked(RuntimeError):
    """Another run holds the results folder."""


def acquire_results_lock(layout: Layout, wait_s: float = 0.0) -> Path:
    """Take the lock of the results folder for this process (until it exits), waiting up
    to ``wait_s`` seconds for another holder; raise ResultsLocked naming the holder."""
    layout.root.mkdir(parents=True, exist_ok=True)
    path = layout.lock
    key = os.path.realpath(path)
    if key in _HELD:
        return path
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = _read_holder(fd)
                os.close(fd)
                raise ResultsLocked(_busy_message(layout.root, holder)) from None
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(_holder()) + "\n").encode(), 0)
    os.fsync(fd)
    _HELD[key] = fd
    return path


def release_results_lock(layout: Layout) -> None:
    """Release the lock early (it is released anyway when the process exits)."""
    key = os.path.realpath(layout.lock)
    fd = _HELD.pop(key, None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cwd": os.getcwd(),
        "command": " ".join(sys.argv)[:300],
    }


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 65536, 0) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _busy_message(results: Path, holder: dict[str, Any]) -> str:
    who = (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
        f"{holder.get('started', '?')} in {holder.get('cwd', '?')}"
        if holder
        else "another process"
    )
    return (
        f"results folder {results} is in use by another run ({who}). Wait for it to "
        "finish, or stop it; two runs on one results folder would write the same files."
    )
