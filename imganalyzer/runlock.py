"""One lock per results folder, held by the run that writes it.

Snakemake's own lock lives in the working folder's ``.snakemake/``: two runs started from
different folders on the same results folder would both write (and sweep each other's
temporaries). This lock is ``<results>/.imganalyzer-run.lock``: an ``flock`` held for the
life of the process, with the holder (pid, host, start time, working folder, command)
written in the file, so that a second run stops with a message naming the first.

A run takes it before Snakemake takes its own lock, so the holder it records is also the
writer of any Snakemake lock naming files of this results folder. When a run is killed
outright (kill -9, OOM, power loss) the ``flock`` goes with its process but Snakemake's
lock stays: the next run, holding the free ``flock``, removes that lock when the recorded
holder is surely dead (this host, its pid gone or reused, or a reboot since), and refuses
with a message naming the holder when it cannot tell (another host).
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

from imganalyzer.files import process_running
from imganalyzer.layout import Layout

_HELD: dict[str, int] = {}  # realpath of the lock file -> its open descriptor
# realpath of the lock file -> the holder it named before this process took it
_PREVIOUS: dict[str, dict[str, Any]] = {}
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


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
    _PREVIOUS[key] = _read_holder(fd)
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


def clear_stale_workflow_lock(layout: Layout, workdir: str | os.PathLike) -> str | None:
    """Remove the lock files in ``workdir``'s ``.snakemake/locks`` that name files under
    the results folder when the run that wrote them is surely dead; this process must hold the
    results lock. Returns the line to log (None: no such lock). Raises ResultsLocked
    naming that run when it may still be alive."""
    results = layout.root
    key = os.path.realpath(layout.lock)
    if key not in _HELD:
        raise RuntimeError(f"the lock of {results} is not held by this process")
    workdir = Path(workdir).absolute()
    locks = workdir / ".snakemake" / "locks"
    stale = workflow_locks_naming(locks, results, workdir)
    if not stale:
        return None
    holder = _PREVIOUS.get(key, {})
    alive = holder_alive(holder)
    if alive is not False:
        raise ResultsLocked(_unsure_message(results, locks, holder, alive))
    for path in stale:
        path.unlink(missing_ok=True)
    return (
        f"removed Snakemake's lock in {locks}: its run ({_who(holder)}) ended without releasing it"
    )


def workflow_locks_naming(locks: Path, results: Path, workdir: Path) -> list[Path]:
    """Snakemake's lock files in ``locks`` (``<n>.input.lock``, ``<n>.output.lock``: one
    path a line, relative to ``workdir`` or absolute) that name a file under ``results``."""
    roots = {os.path.abspath(results), os.path.realpath(results)}
    prefixes = tuple(root.rstrip(os.sep) + os.sep for root in roots)
    found = []
    for path in sorted(locks.glob("*.lock")) if locks.is_dir() else []:
        if not path.name.split(".")[0].isdigit() or not path.is_file():
            continue
        with path.open(encoding="utf-8", errors="replace") as lines:
            named = (os.path.normpath(workdir / line.rstrip("\n")) for line in lines)
            if any(name.startswith(prefixes) or name in roots for name in named):
                found.append(path)
    return found


def holder_alive(holder: dict[str, Any]) -> bool | None:
    """Whether the recorded holder still runs: True, False (surely not), or None where
    this host cannot tell (no record, or a holder on another host)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return None
    boot_id = _boot_id()
    if holder.get("boot_id") and boot_id and holder["boot_id"] != boot_id:
        return False  # the machine restarted since
    if not process_running(pid):
        return False
    # the same start time, or one that cannot be compared: otherwise the pid was reused
    started = holder.get("process_start")
    return started is None or _process_start(pid) in (None, started)


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cwd": os.getcwd(),
        "command": " ".join(sys.argv)[:300],
        # with pid and host, these name one process: pids are reused, after a reboot soon
        "boot_id": _boot_id(),
        "process_start": _process_start(os.getpid()),
    }


def _boot_id() -> str | None:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot); None: not known."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after "pid (name)"


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 65536, 0) or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _who(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    return (
        f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started "
        f"{holder.get('started', '?')} in {holder.get('cwd', '?')}"
    )


def _busy_message(results: Path, holder: dict[str, Any]) -> str:
    return (
        f"results folder {results} is in use by another run ({_who(holder)}). Wait for it "
        "to finish, or stop it; two runs on one results folder would write the same files."
    )


def _unsure_message(results: Path, locks: Path, holder: dict[str, Any], alive: bool | None) -> str:
    where = f"Snakemake's lock in {locks} names files of results folder {results}"
    if alive:
        return (
            f"{where}, and the run that took it is alive ({_who(holder)}) although it no "
            "longer holds the results folder. Wait for it to finish, or stop it."
        )
    if not holder:
        return (
            f"{where}, and no run is recorded as its holder. If no other run is going on, "
            "remove it with `snakemake --unlock` and start again."
        )
    return (
        f"{where}; its run ({_who(holder)}) may still be going on, which cannot be told from "
        f"{socket.gethostname()}. If it is over, remove the lock with `snakemake --unlock` "
        "and start again; if not, wait for it to finish."
    )
