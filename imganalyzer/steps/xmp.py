"""Opt-in XMP sidecars: captions, keywords, people and our other results in standard XMP.

Each current image gets a sidecar holding ``dc:description`` (the caption), ``dc:subject``
keywords (object labels, cloud keywords, optionally OCR words), ``Iptc4xmpExt:PersonInImage``
and MWG face regions (``mwg-rs:Regions``) for named people, ``xmp:Rating`` only when the user
maps aesthetic scores to stars, and everything else (scores, OCR text, answers, models) in
our own namespace ``imganalyzer:`` (:data:`~imganalyzer.steps.xmp_sidecar.NAMESPACE`).

Where sidecars go (:class:`XmpSettings`): ``mirror`` (the default) writes the library's tree
under another root, so the library is never touched; ``beside`` writes next to the
originals. Names follow darktable (``IMG_0001.CR2.xmp``, the default: one sidecar per file,
never ambiguous) or Lightroom (``IMG_0001.xmp``). Lightroom's name is shared by every file of
a folder with the same stem (``IMG_0001.CR2`` and ``IMG_0001.JPG``): the raw file, the one
Lightroom itself writes a sidecar for, gets it (else the first by name), and the others fall
back to the darktable name.

Sidecars are merged, never clobbered (how: :mod:`imganalyzer.steps.xmp_sidecar`).
``results/xmp/state.json`` holds each sidecar's size and mtime with the digest of what we
wrote, so a re-run with unchanged results neither rewrites nor even reads a sidecar.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from imganalyzer.catalog.current import current_shards
from imganalyzer.config import Settings
from imganalyzer.files import atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.results import OK
from imganalyzer.steps.xmp_sidecar import Region, XmpRecord, write_sidecar
from imganalyzer.store import ResultsStore

log = logging.getLogger(__name__)


# Modules whose rows feed a record (faces come in as named faces).
RECORD_MODULES = ("captions", "objects", "ocr", "aesthetic", "technical", "cloud", "metadata")
# The files Lightroom writes sidecars for; they win its shared name (IMG_0001.xmp).
RAW_EXTENSIONS = frozenset(
    [".arw", ".cr2", ".cr3", ".dng", ".nef", ".orf", ".raf", ".rw2", ".pef", ".srw", ".nrw"]
)
OCR_WORD = re.compile(r"\b(?=\w*[^\W\d_])\w{3,}\b")  # words of 3+ characters, a letter among them
MAX_OCR_KEYWORDS = 20
# What XML cannot hold (exiv2 would cut the text at a NUL) and what UTF-8 cannot encode.
_UNWRITABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


@dataclass(frozen=True)
class XmpSettings(Settings):
    """The ``xmp:`` section of the config. ``dir``: the mirror root (None: results/xmp/sidecars).
    ``rating_from_aesthetic``: five ascending aesthetic scores for 1..5 stars (None: no rating).
    ``ocr_keywords``: add the words OCR read to the keywords."""

    section = "xmp"
    enabled: bool
    mode: str
    dir: str | None
    naming: str
    rating_from_aesthetic: tuple[float, ...] | None
    ocr_keywords: bool

    def __post_init__(self) -> None:
        # choices and the five ascending scores were checked by validate_config
        thresholds = self.rating_from_aesthetic
        if thresholds is not None:
            object.__setattr__(self, "rating_from_aesthetic", tuple(map(float, thresholds)))


@dataclass(frozen=True)
class NamedFace:
    """A named person's face: ``box`` (x0, y0, x1, y1) in pixels of the image whose size is
    ``image_size`` (w, h) (the displayed original)."""

    name: str
    box: tuple[float, float, float, float]
    image_size: tuple[int, int] | None  # None: unknown, so no face region (the name only)


@dataclass
class XmpReport:
    """What :func:`write_sidecars` did."""

    written: int = 0
    unchanged: int = 0
    empty: int = 0  # nothing to say about the image: no sidecar created
    failed: list[tuple[str, str]] = field(default_factory=list)  # (image path, reason)

    def summary(self) -> str:
        return (
            f"xmp: {self.written} sidecars written, {self.unchanged} unchanged, "
            f"{self.empty} images without results, {len(self.failed)} failed"
        )


def sidecar_root(
    library: str | os.PathLike, settings: XmpSettings, layout: Layout | None = None
) -> Path:
    """The root under which sidecars mirror the library's tree: the library itself (beside),
    ``xmp.dir``, or by default ``<results>/xmp/sidecars``. A mirror inside the library is
    refused, unless it lies in the results folder (which the catalog leaves out)."""
    library = Path(library)
    if settings.mode == "beside":
        return library
    if settings.dir is not None:
        root = Path(settings.dir)
    elif layout is not None:
        root = layout.xmp_sidecars
    else:
        raise ValueError("xmp.dir: the mirror root is not set")
    inside = root.resolve().is_relative_to(library.resolve())
    if inside and not (layout is not None and root.resolve().is_relative_to(layout.root.resolve())):
        raise ValueError(
            f"xmp.dir {root} lies inside the library {library}: mode mirror never writes "
            "there (use mode: beside to write next to the originals)"
        )
    return root


def sidecar_name(rel_path: str, naming: str) -> str:
    """``IMG_0001.CR2`` -> ``IMG_0001.CR2.xmp`` (darktable) or ``IMG_0001.xmp`` (lightroom)."""
    path = PurePosixPath(rel_path)
    if naming == "lightroom":
        return str(path.with_suffix(".xmp"))
    return f"{rel_path}.xmp"


def sidecar_path(
    library: str | os.PathLike,
    rel_path: str,
    settings: XmpSettings,
    layout: Layout | None = None,
) -> Path:
    """The sidecar of one image, by the naming convention alone (see :func:`sidecar_paths`
    for Lightroom names shared by several files)."""
    return sidecar_root(library, settings, layout) / sidecar_name(rel_path, settings.naming)


def sidecar_paths(
    library: str | os.PathLike,
    rel_paths: Iterable[str],
    settings: XmpSettings,
    layout: Layout | None = None,
) -> dict[str, Path]:
    """The sidecar of each image; under Lightroom naming, of files sharing a folder and stem
    only one gets the short name (a raw file first, then by name), the others darktable's."""
    root = sidecar_root(library, settings, layout)
    paths = sorted(rel_paths)
    names = {p: sidecar_name(p, "darktable") for p in paths}
    if settings.naming == "lightroom":
        owners: dict[str, str] = {}
        for path in sorted(paths, key=lambda p: (not _is_raw(p), p)):
            owners.setdefault(sidecar_name(path, "lightroom").casefold(), path)
        for path in owners.values():
            names[path] = sidecar_name(path, "lightroom")
    return {p: root / name for p, name in names.items()}


def _is_raw(rel_path: str) -> bool:
    return PurePosixPath(rel_path).suffix.lower() in RAW_EXTENSIONS


def image_record(
    rows: Mapping[str, Mapping[str, Any] | None],
    people: Sequence[NamedFace] = (),
    settings: XmpSettings | None = None,
) -> XmpRecord:
    """The record of one image from its module rows (``{module: row or None}``; error rows
    are ignored) and its named faces. Pure: reads nothing."""
    settings = settings or XmpSettings.defaults()
    ok = {m: row for m, row in rows.items() if row and row.get("status", OK) == OK}
    captions, objects, ocr = ok.get("captions", {}), ok.get("objects", {}), ok.get("ocr", {})
    cloud, technical = ok.get("cloud", {}), ok.get("technical", {})
    aesthetic = ok.get("aesthetic", {}).get("aesthetic")
    labels = _unique(_label_names(objects.get("labels")))
    ocr_text = _text(ocr.get("text"))
    keywords = labels + _strings(cloud.get("keywords"))
    if settings.ocr_keywords and ocr_text:
        keywords += _unique(OCR_WORD.findall(ocr_text))[:MAX_OCR_KEYWORDS]
    caption, cloud_description = _text(captions.get("caption")), _text(cloud.get("description"))
    fields = {
        "Caption": caption,
        "Answers": tuple(_clean(f"{q}: {a}") for q, a in _answers(captions.get("answers"))),
        "Labels": tuple(labels),
        "OCRText": ocr_text,
        "CloudDescription": cloud_description,
        "AestheticScore": _number(aesthetic),
        "Sharpness": _number(technical.get("sharpness")),
        "Models": tuple(
            f"{module}: {row['model']}"
            for module, row in sorted(ok.items())
            if row.get("model") and module != "metadata"  # metadata's model is the camera
        ),
    }
    regions, size = _regions(people)
    return XmpRecord(
        description=caption or cloud_description,
        keywords=tuple(_unique(keywords)),
        people=tuple(_unique(face.name for face in people if face.name)),
        regions=regions,
        region_size=size,
        rating=_stars(aesthetic, settings.rating_from_aesthetic),
        fields=tuple((name, value) for name, value in fields.items() if value),
    )


def _answers(answers: Any) -> list[tuple[Any, Any]]:
    """(question, answer) pairs from ``{question: answer}`` or a list of such objects."""
    if isinstance(answers, Mapping):
        return list(answers.items())
    return [(a.get("question"), a.get("answer")) for a in answers or () if isinstance(a, Mapping)]


def _label_names(labels: Any) -> list[str]:
    """Object labels as a list of names (rows hold names, or detections with a ``label``)."""
    names = []
    for label in labels or ():
        name = label.get("label") if isinstance(label, Mapping) else label
        if name:
            names.append(str(name))
    return names


def _strings(values: Any) -> list[str]:
    return [str(v).strip() for v in values or () if str(v).strip()]


def _clean(text: str) -> str:
    return _UNWRITABLE.sub(" ", text)


def _text(value: Any) -> str | None:
    text = _clean(str(value)).strip() if value is not None else ""
    return text or None


def _number(value: Any) -> str | None:
    return None if value is None else f"{float(value):.4g}"


def _unique(values: Iterable[str]) -> list[str]:
    """Distinct values (case-insensitively), first spelling and order kept."""
    seen, unique = set(), []
    for value in values:
        value = " ".join(_clean(value).split())
        if value and value.casefold() not in seen:
            seen.add(value.casefold())
            unique.append(value)
    return unique


def _stars(score: float | None, thresholds: Sequence[float] | None) -> int | None:
    """0..5: how many thresholds the score reaches; None when scores are not mapped."""
    if thresholds is None or score is None:
        return None
    return sum(score >= t for t in thresholds)


def _regions(faces: Sequence[NamedFace]) -> tuple[tuple[Region, ...], tuple[int, int] | None]:
    regions, size = [], None
    for face in faces:
        if not face.name or not face.image_size:
            continue
        w, h = face.image_size
        x0, y0, x1, y1 = (
            min(max(v / s, 0.0), 1.0) for v, s in zip(face.box, (w, h, w, h), strict=True)
        )
        values = ((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)
        regions.append(Region(" ".join(_clean(face.name).split()), *(f"{v:.6f}" for v in values)))
        size = size or (int(w), int(h))
    return tuple(regions), size


def write_sidecars(
    layout: Layout,
    library: str | os.PathLike,
    settings: XmpSettings,
    modules: Sequence[str],
    named_faces: Mapping[str, Sequence[tuple[str, Sequence[float]]]] | None = None,
    view_file: str | os.PathLike | None = None,
) -> XmpReport:
    """Write or update the sidecar of every current image (nothing unless ``enabled``).
    ``named_faces``: image path -> (name, box in original pixels) of its named people's
    faces (``people.named_faces``). A failure (unwritable folder, unreadable foreign
    sidecar) is logged and counted; the other images go on. ``view_file``: the run's
    recorded library view (else the library is scanned)."""
    if not settings.enabled:
        log.info("xmp: not enabled, no sidecars written")
        return XmpReport()
    library = Path(library)
    view = current_shards(layout, library, view_file)
    store = ResultsStore(layout)
    paths = (e.path for s in view.shards.values() for e in s.entries)
    targets = sidecar_paths(library, paths, settings, layout)
    state_file = layout.xmp_state
    previous, state = _load_state(state_file), {}
    used = [m for m in RECORD_MODULES if m in modules or m == "technical"]
    report = XmpReport()
    named_faces = named_faces or {}
    for current in view.shards.values():
        by_module = {module: store.current_rows(module, current) for module in used}
        for entry in current.entries:
            rows = {module: rows.get(entry.path) for module, rows in by_module.items()}
            faces = _with_image_size(
                named_faces.get(entry.path, ()), rows.get("technical"), rows.get("metadata")
            )
            record = image_record(rows, faces, settings)
            target = targets[entry.path]
            try:
                outcome, known = _update(target, record, previous.get(entry.path))
            except (OSError, ValueError) as error:
                log.warning("xmp: %s: %s", entry.path, error)
                report.failed.append((entry.path, str(error)))
                continue
            setattr(report, outcome, getattr(report, outcome) + 1)
            if known is not None:
                state[entry.path] = known
    if state != previous:
        atomic_write_text(state_file, json.dumps(state, ensure_ascii=True, sort_keys=True))
    log.info(report.summary())
    return report


def _with_image_size(
    faces: Sequence[tuple[str, Sequence[float]]],
    technical: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None = None,
) -> list[NamedFace]:
    """Named faces as MWG regions want them: relative to the image as stored, before its
    EXIF orientation is applied (how digiKam and ExifTool's MWG tags read them). Our boxes
    are in displayed pixels (technical width/height); without a known size a face gives
    its name but no region."""
    if not faces:
        return []
    if not (technical and technical.get("width") and technical.get("height")):
        return [NamedFace(name, (x0, y0, x1, y1), None) for name, (x0, y0, x1, y1) in faces]
    displayed = (int(technical["width"]), int(technical["height"]))
    orientation = int((metadata or {}).get("orientation") or 1)
    size = displayed[::-1] if orientation in (5, 6, 7, 8) else displayed
    return [NamedFace(name, stored_box(box, displayed, orientation), size) for name, box in faces]


def stored_box(
    box: Sequence[float], displayed: tuple[int, int], orientation: int
) -> tuple[float, float, float, float]:
    """A box (x0, y0, x1, y1) in displayed pixels -> the same box in the stored image,
    for EXIF orientation 1-8 (displayed = the stored image with the orientation applied)."""
    width, height = displayed

    def stored(x: float, y: float) -> tuple[float, float]:
        return {
            2: (width - x, y),
            3: (width - x, height - y),
            4: (x, height - y),
            5: (y, x),
            6: (y, width - x),
            7: (height - y, width - x),
            8: (height - y, x),
        }.get(orientation, (x, y))

    (ax, ay), (bx, by) = stored(box[0], box[1]), stored(box[2], box[3])
    return (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


def _update(target: Path, record: XmpRecord, known: list | None) -> tuple[str, list | None]:
    """(``written``, ``unchanged`` or ``empty``; the state entry of the sidecar). Reads the
    sidecar only when it or the record changed since the state file recorded it."""
    digest = record.digest()
    now = _state_entry(target, digest)
    if known is not None and known == now:
        return "unchanged", now
    if record.is_empty() and now is None:
        return "empty", None
    written = write_sidecar(target, record)
    return ("written" if written else "unchanged"), _state_entry(target, digest)


def _state_entry(target: Path, digest: str) -> list | None:
    with contextlib.suppress(FileNotFoundError):
        st = target.stat()
        return [str(target), digest, st.st_size, st.st_mtime_ns]
    return None


def _load_state(path: Path) -> dict[str, list]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
