"""Catalog benchmark: re-scan of a library of 100K unchanged, already catalogued files (OPP-6).

Run from the repository root as a plain script (``bench/`` is then first on ``sys.path``, so
``common`` imports directly; ``imganalyzer`` comes from the editable install):

    .venv/bin/python bench/bench_catalog.py                 # 100,000 files in 1,000 folders
    .venv/bin/python bench/bench_catalog.py --files 20000
    .venv/bin/python bench/bench_catalog.py --quick         # 5,000 files

Creates tiny ``.jpg`` files (a few bytes each) in a temporary folder, times the first
``Catalog.ingest``, ``scan_library`` alone and the no-change re-scan (which must write no
shard), then re-scans once more under observation to show that no image content is read:

* a ``sys.addaudithook`` hook records every ``open`` event whose path lies in the library
  (Python-level opens: Pillow, exifread, ``open()``);
* inotify watches on every library folder record IN_OPEN / IN_ACCESS on files at the kernel
  level, which also covers C libraries (LibRaw, libheif) that open files themselves;
* ``/proc/self/io`` ``rchar`` (bytes returned by read syscalls of this process) for context:
  it includes reading the shard manifests, which lie outside the library.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import tempfile
import time
from pathlib import Path

from common import Row, bench_parser, machine_description, measure, ms_row, publish

from imganalyzer.catalog.scan import scan_library
from imganalyzer.catalog.store import Catalog
from imganalyzer.layout import Layout

SHARD_SIZE = 1000
FOLDERS = 1000
CONTENT = b"\xff\xd8\xff\xe0 not really a JPEG\n"

IN_ACCESS, IN_OPEN, IN_Q_OVERFLOW, IN_ISDIR = 0x1, 0x20, 0x4000, 0x40000000


def log(message: str) -> None:
    print(message, flush=True)


def make_library(root: Path, n_files: int) -> list[Path]:
    """``n_files`` tiny files in ``FOLDERS`` folders two levels deep; returns the folders."""
    folders = [root / f"{i // 100:04d}" / f"event-{i % 100:02d}" for i in range(FOLDERS)]
    for index in range(n_files):
        folder = folders[index % FOLDERS]
        if index < FOLDERS:
            folder.mkdir(parents=True)
        fd = os.open(folder / f"IMG_{index:06d}.jpg", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(fd, CONTENT)
        os.close(fd)
    return sorted({root} | {f.parent for f in folders} | set(folders))


def read_rchar() -> int:
    with open("/proc/self/io", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


class AuditOpens:
    """Records ``open`` audit events under ``root`` while ``active`` (hooks cannot be removed)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root.resolve()) + os.sep
        self.active = False
        self.opened: list[str] = []
        self.scandirs = 0
        sys.addaudithook(self)

    def __call__(self, event: str, args: tuple) -> None:
        if not self.active or event not in ("open", "os.scandir", "os.listdir"):
            return
        path = args[0]
        if isinstance(path, int) or path is None:  # an fd: already opened by path before
            return
        path = os.path.abspath(os.fsdecode(path))
        if (path + os.sep).startswith(self.root):
            if event == "open":
                self.opened.append(path)
            else:
                self.scandirs += 1


class KernelOpens:
    """inotify watches on the library folders: opens and reads of files (not folders)."""

    def __init__(self, folders: list[Path]) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        for folder in folders:
            if self.libc.inotify_add_watch(self.fd, os.fsencode(folder), IN_OPEN | IN_ACCESS) < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {folder} failed")

    def drain(self) -> dict[str, int]:
        counts = {"file_open": 0, "file_read": 0, "folder_events": 0, "overflow": 0}
        while True:
            try:
                buffer = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                return counts
            offset = 0
            while offset < len(buffer):
                _wd, mask, _cookie, length = struct.unpack_from("iIII", buffer, offset)
                offset += 16 + length
                if mask & IN_Q_OVERFLOW:
                    counts["overflow"] += 1
                elif mask & IN_ISDIR:
                    counts["folder_events"] += 1
                else:
                    counts["file_open" if mask & IN_OPEN else "file_read"] += 1

    def close(self) -> None:
        os.close(self.fd)


def run(n_files: int, repeats: int = 3) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="imganalyzer-bench-catalog-") as tmp:
        library, results = Path(tmp) / "library", Path(tmp) / "results"
        log(f"creating {n_files:,} files in {FOLDERS:,} folders under {library} ...")
        start = time.perf_counter()
        folders = make_library(library, n_files)
        log(f"  done in {time.perf_counter() - start:.1f} s")
        catalog = Catalog(Layout(results))

        first = measure(lambda: catalog.ingest(library, shard_size=SHARD_SIZE), 1)
        shards = catalog.shard_ids()
        manifest_bytes = sum(catalog.manifest_path(s).stat().st_size for s in shards)
        log(f"first ingest: {len(shards)} shards, {manifest_bytes / 1e6:.1f} MB of manifests")

        scan = measure(lambda: scan_library(library), repeats)
        reports = []
        rescan = measure(lambda: reports.append(catalog.ingest(library, SHARD_SIZE)), repeats)
        new_shards = sum(len(r.new_shards) for r in reports)
        if catalog.shard_ids() != shards:
            raise RuntimeError("the no-change re-scan changed the catalog")

        log("re-scan under audit hook + inotify ...")
        audit, kernel = AuditOpens(library), KernelOpens(folders)
        rchar_before = read_rchar()
        audit.active = True
        audited = measure(lambda: reports.append(catalog.ingest(library, SHARD_SIZE)), 1)
        audit.active = False
        rchar = read_rchar() - rchar_before
        seen = kernel.drain()
        opened_bytes = sum(os.path.getsize(p) for p in audit.opened if os.path.isfile(p))
        opened, listed = len(audit.opened), audit.scandirs

        # Positive control: both detectors must see a deliberate read of one image file.
        audit.active = True
        next(library.rglob("*.jpg")).read_bytes()
        audit.active = False
        control = kernel.drain()
        control_audit = len(audit.opened) - opened
        kernel.close()

    return [
        ms_row(f"catalog: first ingest of {n_files:,} files", first, 1, f"{len(shards)} shards"),
        ms_row("catalog: scan_library alone (scandir + stat)", scan),
        ms_row(
            f"catalog: re-scan of {n_files:,} unchanged files",
            rescan,
            1,
            f"new shards written: {new_shards}",
        ),
        Row("catalog: re-scan per 1M files (extrapolated)", rescan.best * 1e6 / n_files, "s"),
        ms_row("catalog: re-scan under audit hook + inotify", audited),
        Row("re-scan: library files opened (audit hook)", opened, "files"),
        Row("re-scan: library folders listed (audit hook)", listed, "folders"),
        Row(
            "re-scan: image files opened / read (inotify)",
            seen["file_open"] + seen["file_read"],
            "events",
            f"{seen['file_open']} opens, {seen['file_read']} reads, "
            f"{seen['folder_events']} folder open/list events, {seen['overflow']} overflows",
        ),
        Row(
            "re-scan: bytes read from image files",
            opened_bytes,
            "bytes",
            "at most the size of the image files opened",
        ),
        Row(
            "control: reading 1 image on purpose is seen",
            control_audit,
            "opens",
            f"by the audit hook; inotify: {control['file_open']} open(s), "
            f"{control['file_read']} read(s)",
        ),
        Row(
            "re-scan: rchar delta (/proc/self/io)",
            rchar,
            "bytes",
            f"all read() bytes of the process, incl. the {len(shards)} manifests "
            f"({manifest_bytes:,} bytes) read back",
        ),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = bench_parser(__doc__, "5,000 files, 1 repeat")
    parser.add_argument("--files", type=int, default=100_000, help="library size (100,000)")
    args = parser.parse_args(argv)
    n_files = 5_000 if args.quick else args.files
    if not args.json:
        log(machine_description())
    rows = run(n_files, repeats=1 if args.quick else 3)
    title = f"catalog re-scan ({n_files:,} files)"
    publish(title, rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
