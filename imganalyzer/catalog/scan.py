"""Listing a photo library: the scan stats files (no image content is read), and the cheap
content fingerprint that recognizes a moved file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from imganalyzer import formats

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = formats.IMAGE_EXTENSIONS


# Bytes hashed at each end of a file by content_fingerprint.
FINGERPRINT_BYTES = 1 << 20


def content_fingerprint(path: str | os.PathLike, size: int | None = None) -> str:
    """Hex blake2b of the file size, its first and its last MiB (the whole file up to 2 MiB)."""
    if size is None:
        size = os.stat(path).st_size
    digest = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    with open(path, "rb") as handle:
        if size <= 2 * FINGERPRINT_BYTES:
            digest.update(handle.read())
        else:
            digest.update(handle.read(FINGERPRINT_BYTES))
            handle.seek(size - FINGERPRINT_BYTES)
            digest.update(handle.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan_library(
    library: str | os.PathLike,
    exclude: Iterable[str | os.PathLike] = (),
    passed_over: Counter | None = None,
) -> dict:
    """Stat every image under ``library``; return ``{relative path: (size, mtime_ns)}``.

    Reads no file content. Skips hidden files and folders, the ``exclude`` folders (the
    results folder when it lies inside the library), symlinks whose target is outside
    the library, and symlink loops. Unreadable folders are logged and skipped.
    ``passed_over``, if given, counts the other regular files by lower-case extension.
    """
    root = Path(library).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"library folder not found: {library}")
    excluded = {_dir_key(p) for p in exclude if Path(p).is_dir()}
    found: dict[str, tuple[int, int]] = {}
    seen_dirs = {_dir_key(root)}
    pending = [(str(root), "")]
    # Folders reached through a symlink wait until every real folder is scanned, so a
    # folder reachable both ways is always listed under its real path.
    linked: list[tuple[str, str]] = []
    while pending:
        folder, rel_folder = pending.pop()
        for item in _list_dir(folder):
            if item.name.startswith("."):
                continue
            st = _stat_inside(item, root)
            if st is None:
                continue
            rel = f"{rel_folder}{item.name}"
            if stat.S_ISDIR(st.st_mode):
                if item.is_symlink():
                    linked.append((item.path, f"{rel}/"))
                    continue
                key = (st.st_dev, st.st_ino)
                if key not in seen_dirs and key not in excluded:
                    seen_dirs.add(key)
                    pending.append((item.path, f"{rel}/"))
            elif stat.S_ISREG(st.st_mode) and is_image_name(item.name):
                found[rel] = (st.st_size, st.st_mtime_ns)
            elif passed_over is not None and stat.S_ISREG(st.st_mode):
                passed_over[os.path.splitext(item.name)[1].lower() or "(no extension)"] += 1
        while not pending and linked:
            path, rel = linked.pop(0)
            key = _dir_key(path)
            if key not in seen_dirs and key not in excluded:
                seen_dirs.add(key)
                pending.append((path, rel))
    return found


def _dir_key(path: str | os.PathLike) -> tuple[int, int]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino)


def _list_dir(folder: str) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as error:
        log.warning("skipping unreadable folder %s: %s", folder, error.strerror or error)
        return []


def _stat_inside(item: os.DirEntry, root: Path) -> os.stat_result | None:
    """The stat of ``item`` (following a symlink only if it stays inside ``root``)."""
    try:
        if item.is_symlink():
            target = Path(os.path.realpath(item.path))
            if not target.is_relative_to(root):
                return None
        return item.stat(follow_symlinks=True)
    except OSError:
        return None  # dangling symlink, symlink loop or a file that vanished mid-scan
