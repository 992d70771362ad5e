"""Thumbnails read from open shard zips: a zip's directory is read once per version of the
file (not once per request), so a thumbnail costs one seek and one read."""

from __future__ import annotations

import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

# Open shard zips kept (a file handle and the directory of ~1,000 members each).
OPEN_ZIPS = 64


class ThumbnailZips:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: OrderedDict[Path, tuple[int, zipfile.ZipFile]] = OrderedDict()

    def read(self, path: Path, row: int) -> bytes | None:
        """JPEG bytes of manifest row ``row``'s thumbnail in ``path``; None without one (or
        when ``path`` is no readable zip)."""
        try:
            version = path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        with self._lock:
            found = self._open.get(path)
            if found is None or found[0] != version:
                if found is not None:
                    del self._open[path]
                    found[1].close()
                try:
                    archive = zipfile.ZipFile(path)
                except (OSError, zipfile.BadZipFile):  # cut short or damaged: no thumbnails
                    return None
                found = self._open[path] = (version, archive)
                while len(self._open) > OPEN_ZIPS:
                    self._open.popitem(last=False)[1][1].close()
            self._open.move_to_end(path)
            try:
                return found[1].read(f"{row}.jpg")
            except KeyError:
                return None
