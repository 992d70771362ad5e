"""The CPU jobs of one shard: decode once (tiers, thumbnails, technical) and metadata.

A bad image never fails a shard: it becomes an error row with a one-line reason and
the other images are analysed normally. Each technical row also holds the image's content
``fingerprint`` (read right after the decode, from the page cache): the catalog matches
moved files by it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from imganalyzer.catalog.manifests import Entry, read_manifest
from imganalyzer.catalog.scan import content_fingerprint
from imganalyzer.decode.failures import FileError
from imganalyzer.decode.metadata import read_metadata
from imganalyzer.decode.readers import decode_image
from imganalyzer.decode.technical import analyze_technical
from imganalyzer.progress import Progress
from imganalyzer.results import error_row, ok_row, write_rows
from imganalyzer.threadpool import ordered_map

if TYPE_CHECKING:
    from imganalyzer.decode.tiers import Compression

log = logging.getLogger(__name__)

# Images per Zarr shard of a tier array: each block is written once, whole.
TIER_BLOCK = 64

# The file this thread is reading, for the warnings the decoders raise.
_CURRENT_FILE = threading.local()


class ImageSkipped(Exception):
    """The file on disk is not the catalogued version (deleted or changed since)."""

    kind = "vanished"


@dataclass
class Failure:
    """Why one image has no result: a one-line reason and its ``error_kind``."""

    reason: str
    kind: str


@dataclass
class DecodedRow:
    tiers: dict[str, np.ndarray]
    thumbnail_source: np.ndarray
    fields: dict[str, Any]


def check_version(path: Path, entry: Entry) -> None:
    """Raise ImageSkipped unless the file still has the catalogued size and mtime."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageSkipped("file not found (deleted after it was catalogued)") from None
    if (st.st_size, st.st_mtime_ns) != entry.version:
        raise ImageSkipped("file changed after it was catalogued; the next run analyses it")


T = TypeVar("T")


def _guarded(entry: Entry, work: Callable[[], T]) -> T | Failure:
    """Run ``work``; turn a failure into a :class:`Failure`, so that one image never fails the
    shard. An unexpected exception is logged in full to the job's log (not the row)."""
    _CURRENT_FILE.path = entry.path
    try:
        return work()
    except (FileError, ImageSkipped) as error:
        return Failure(str(error), error.kind)
    except OSError as error:  # the file's stat (the readers classify their own errors)
        log.info("%s: %s", entry.path, error)
        return Failure(f"cannot read file: {error.strerror or error}", "unreadable")
    except Exception as error:  # noqa: BLE001 (a decoder bug on this file: keep the details)
        log.exception("%s: unexpected failure", entry.path)
        message = " ".join(str(error).split())
        return Failure(f"cannot decode image: {type(error).__name__}: {message}", "corrupt")
    finally:
        _CURRENT_FILE.path = None


def run_decode_shard(
    manifest: str | os.PathLike,
    library: str | os.PathLike,
    tiers_out: str | os.PathLike,
    technical_out: str | os.PathLike,
    thumbnails_out: str | os.PathLike,
    tiers: dict[str, int],
    compression: Compression = "jpeg",
    quality: int = 90,
    max_pixels: int = 200_000_000,
    threads: int = 1,
) -> None:
    """Decode every image of a shard once and write tiers, thumbnails and technical rows."""
    # Imported here: the metadata job, which shares this module, needs no zarr (~0.4 s).
    from imganalyzer.decode.thumbnails import ThumbnailWriter
    from imganalyzer.decode.tiers import TierWriter, make_tiers

    entries = read_manifest(manifest)
    library = Path(library)
    long_edge = max(tiers.values())
    thumb_tier = _thumbnail_tier(tiers)

    def decode_one(entry: Entry) -> DecodedRow | Failure:
        def work() -> DecodedRow:
            path = library / entry.path
            check_version(path, entry)
            decoded = decode_image(path, long_edge, max_pixels)
            tier_images = make_tiers(decoded.rgb, tiers)
            width, height = decoded.original_size
            fields = {"width": width, "height": height, "decoder": decoded.method}
            if decoded.note:
                fields["note"] = decoded.note
            fields.update(_fingerprint(path, entry))
            fields.update(analyze_technical(decoded.rgb))
            thumb = tier_images[thumb_tier] if thumb_tier else decoded.rgb
            return DecodedRow(tier_images, thumb, fields)

        return _guarded(entry, work)

    started = time.perf_counter()
    progress = Progress(f"decode {Path(manifest).stem}", len(entries))
    rows = []
    with (
        decoder_output_to_log(),
        TierWriter(
            tiers_out,
            n_images=len(entries),
            tiers=tiers,
            block=TIER_BLOCK,
            compression=compression,
            quality=quality,
        ) as tier_writer,
        ThumbnailWriter(thumbnails_out) as thumbnails,
    ):
        for index, (entry, outcome) in enumerate(
            zip(entries, ordered_map(decode_one, entries, threads), strict=True)
        ):
            if isinstance(outcome, Failure):
                log.warning("%s: %s", entry.path, outcome.reason)
                tier_writer.write(index, None)
                rows.append(error_row(entry, outcome.reason, outcome.kind))
                progress.advance()
                continue
            tier_writer.write(index, outcome.tiers)
            thumbnails.add(index, outcome.thumbnail_source)
            rows.append(ok_row(entry, outcome.fields))
            progress.advance()
    progress.finish()
    write_rows(technical_out, rows)
    _log_summary("decode", rows, started)


def write_undecoded_shard(
    tiers_out: str | os.PathLike,
    technical_out: str | os.PathLike,
    thumbnails_out: str | os.PathLike,
) -> None:
    """The outputs of a decode job that failed as a whole (see jobstatus.shard_job): no
    technical rows (its images count as not analysed yet), an empty tier folder (a job that
    reads it fails naming the decode job) and a thumbnail archive without thumbnails."""
    from imganalyzer.decode.thumbnails import ThumbnailWriter

    shutil.rmtree(tiers_out, ignore_errors=True)
    Path(tiers_out).mkdir(parents=True)
    with ThumbnailWriter(thumbnails_out):
        pass
    write_rows(technical_out, [])


def _fingerprint(path: Path, entry: Entry) -> dict[str, str]:
    """``{"fingerprint": ...}``, empty if the file cannot be read again (then a move of it
    is processed as a new file)."""
    try:
        return {"fingerprint": content_fingerprint(path, entry.size)}
    except OSError as error:
        log.warning("%s: no fingerprint: %s", entry.path, error)
        return {}


def _thumbnail_tier(tiers: dict[str, int]) -> str | None:
    """The smallest tier that is still at least thumbnail-sized (cheapest to shrink)."""
    from imganalyzer.decode.thumbnails import THUMBNAIL_LONG_EDGE

    big_enough = [name for name, size in tiers.items() if size >= THUMBNAIL_LONG_EDGE]
    return min(big_enough, key=tiers.__getitem__) if big_enough else None


def run_metadata_shard(
    manifest: str | os.PathLike,
    library: str | os.PathLike,
    output: str | os.PathLike,
    threads: int = 1,
) -> None:
    """Read the header-only metadata of every image of a shard."""
    entries = read_manifest(manifest)
    library = Path(library)

    def read_one(entry: Entry) -> dict[str, object] | Failure:
        def work() -> dict[str, object]:
            path = library / entry.path
            check_version(path, entry)
            return read_metadata(path)

        return _guarded(entry, work)

    started = time.perf_counter()
    rows = []
    with decoder_output_to_log():
        outcomes = list(ordered_map(read_one, entries, threads))
    for entry, outcome in zip(entries, outcomes, strict=True):
        if isinstance(outcome, Failure):
            log.warning("%s: %s", entry.path, outcome.reason)
            rows.append(error_row(entry, outcome.reason, outcome.kind))
        else:
            rows.append(ok_row(entry, outcome))
    write_rows(output, rows)
    _log_summary("metadata", rows, started)


def _log_summary(job: str, rows: list[dict[str, Any]], started: float) -> None:
    errors = sum(row["status"] != "ok" for row in rows)
    seconds = time.perf_counter() - started
    rate = len(rows) / seconds if seconds > 0 else 0.0
    log.info(
        "%s: %d images, %d errors, %.2f s (%.1f images/s)", job, len(rows), errors, seconds, rate
    )


class _NameTheFile(logging.Filter):
    """Prefix a Python warning (Pillow's "Truncated File Read", ...) with the file at hand."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = getattr(_CURRENT_FILE, "path", None)
        if path is not None:
            record.msg, record.args = f"{path}: {record.getMessage().strip()}", ()
        return True


@contextlib.contextmanager
def decoder_output_to_log() -> Iterator[None]:
    """Send what native decoders print (LibRaw's "<path>: Unexpected end of file", libtiff
    and libheif warnings) and Python warnings (named by the file being read) to this job's
    log instead of the console."""
    sys.stderr.flush()
    saved = os.dup(2)
    warnings_log = logging.getLogger("py.warnings")
    name_the_file = _NameTheFile()
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        logging.captureWarnings(True)
        warnings_log.addFilter(name_the_file)
        try:
            yield
        finally:
            warnings_log.removeFilter(name_the_file)
            logging.captureWarnings(False)
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    log.info("decoder output: %s", line.strip())
