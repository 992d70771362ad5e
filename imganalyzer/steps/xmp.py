"""Opt-in XMP sidecars: captions, keywords, people and our other results in standard XMP.

Each current image gets a sidecar holding ``dc:description`` (the caption), ``dc:subject``
keywords (object labels, cloud keywords, optionally OCR words), ``Iptc4xmpExt:PersonInImage``
and MWG face regions (``mwg-rs:Regions``) for named people, ``xmp:Rating`` only when the user
maps aesthetic scores to stars, and everything else (scores, OCR text, answers, models) in
our own namespace ``imganalyzer:`` (:data:`NAMESPACE`).

Where sidecars go (:class:`XmpSettings`): ``mirror`` (the default) writes the library's tree
under another root, so the library is never touched; ``beside`` writes next to the
originals. Names follow darktable (``IMG_0001.CR2.xmp``, the default: one sidecar per file,
never ambiguous) or Lightroom (``IMG_0001.xmp``). Lightroom's name is shared by every file of
a folder with the same stem (``IMG_0001.CR2`` and ``IMG_0001.JPG``): the raw file, the one
Lightroom itself writes a sidecar for, gets it (else the first by name), and the others fall
back to the darktable name.

Sidecars are merged, never clobbered. The XMP is read and written with exiv2 (pyexiv2):
fields we do not own are kept as they are. What we added to shared fields is recorded in
our namespace (``AddedKeywords``, ``AddedPeople``, ``AddedRegions``, ``AddedDescription``,
``AddedRating``), so an update removes exactly our old values: keywords, people and regions
are unions (the user's own entries kept, ours added, ours from before removed), and a
description or rating is only set where there is none or where it is still the one we
wrote. Writes are atomic (temporary file and rename in the sidecar's folder) and idempotent:
``imganalyzer:Digest`` holds a hash of what we wrote, and ``results/xmp/state.json`` its
sidecar's size and mtime, so a re-run with unchanged results neither rewrites nor even reads
a sidecar.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pyexiv2

from imganalyzer.catalog.current import current_shards
from imganalyzer.files import atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.results import OK

log = logging.getLogger(__name__)

NAMESPACE = "http://ns.imganalyzer.org/1.0/"
PREFIX = "imganalyzer"
GENERATOR = "imganalyzer"
FORMAT_VERSION = "1"  # bump when what a record writes changes: every sidecar is then rewritten
MODES = ("mirror", "beside")
NAMINGS = ("darktable", "lightroom")
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

# An empty XMP packet: exiv2 opens it as a sidecar, the seed of a new one.
EMPTY_PACKET = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"></x:xmpmeta><?xpacket end="w"?>'
)
OURS = f"Xmp.{PREFIX}."
SUBJECT = "Xmp.dc.subject"
DESCRIPTION = "Xmp.dc.description"
X_DEFAULT = 'lang="x-default"'
PEOPLE = "Xmp.iptcExt.PersonInImage"
RATING = "Xmp.xmp.Rating"
REGIONS = "Xmp.mwg-rs.Regions"
DIMENSIONS = f"{REGIONS}/mwg-rs:AppliedToDimensions"
REGION_LIST = f"{REGIONS}/mwg-rs:RegionList"
_REGION_ITEM = re.compile(re.escape(REGION_LIST) + r"\[(\d+)\](.*)")
_ARRAY_TYPES = {"XmpBag": "Bag", "XmpSeq": "Seq", "XmpAlt": "Alt"}


@dataclass(frozen=True)
class XmpSettings:
    """The ``xmp:`` section of the config. ``dir``: the mirror root (None: results/xmp/sidecars).
    ``rating_from_aesthetic``: five ascending aesthetic scores for 1..5 stars (None: no rating).
    ``ocr_keywords``: add the words OCR read to the keywords."""

    enabled: bool = False
    mode: str = "mirror"
    dir: str | None = None
    naming: str = "darktable"
    rating_from_aesthetic: tuple[float, ...] | None = None
    ocr_keywords: bool = False

    def __post_init__(self) -> None:
        # choices and the five ascending scores were checked by validate_config
        thresholds = self.rating_from_aesthetic
        if thresholds is not None:
            object.__setattr__(self, "rating_from_aesthetic", tuple(map(float, thresholds)))

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> XmpSettings:
        return cls(**dict(section or {}))


@dataclass(frozen=True)
class NamedFace:
    """A named person's face: ``box`` (x0, y0, x1, y1) in pixels of the image whose size is
    ``image_size`` (w, h) (the displayed original)."""

    name: str
    box: tuple[float, float, float, float]
    image_size: tuple[int, int] | None  # None: unknown, so no face region (the name only)


@dataclass(frozen=True)
class Region:
    """An MWG face region: the centre and size of its area, normalised to the image size."""

    name: str
    x: str
    y: str
    w: str
    h: str

    @property
    def values(self) -> tuple[str, str, str, str]:
        return (self.x, self.y, self.w, self.h)

    @property
    def key(self) -> str:
        """How ``AddedRegions`` names the region (its values exactly as written)."""
        return "|".join((self.name, *self.values))


@dataclass(frozen=True)
class XmpRecord:
    """What we write for one image. ``fields``: our namespace's properties (text or list)."""

    description: str | None = None
    keywords: tuple[str, ...] = ()
    people: tuple[str, ...] = ()
    regions: tuple[Region, ...] = ()
    region_size: tuple[int, int] | None = None  # mwg-rs:AppliedToDimensions (w, h)
    rating: int | None = None
    fields: tuple[tuple[str, str | tuple[str, ...]], ...] = ()

    def is_empty(self) -> bool:
        return not (self.description or self.keywords or self.people or self.fields)

    def digest(self) -> str:
        """A hash of everything the record writes (and of the format version)."""
        regions = [region.key for region in self.regions]
        values = (self.description, self.keywords, self.people, regions, self.region_size)
        text = json.dumps([FORMAT_VERSION, *values, self.rating, self.fields], ensure_ascii=True)
        return hashlib.sha256(text.encode()).hexdigest()[:32]


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


# ------------------------------------------------------------------- paths


def sidecar_root(
    library: str | os.PathLike, settings: XmpSettings, results: str | os.PathLike | None = None
) -> Path:
    """The root under which sidecars mirror the library's tree: the library itself (beside),
    ``xmp.dir``, or by default ``<results>/xmp/sidecars``. A mirror inside the library is
    refused, unless it lies in the results folder (which the catalog leaves out)."""
    library = Path(library)
    if settings.mode == "beside":
        return library
    if settings.dir is None and results is None:
        raise ValueError("xmp.dir: the mirror root is not set")
    root = Path(settings.dir) if settings.dir is not None else Layout(results).xmp_sidecars
    inside = root.resolve().is_relative_to(library.resolve())
    if inside and not (
        results is not None and root.resolve().is_relative_to(Path(results).resolve())
    ):
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
    results: str | os.PathLike | None = None,
) -> Path:
    """The sidecar of one image, by the naming convention alone (see :func:`sidecar_paths`
    for Lightroom names shared by several files)."""
    return sidecar_root(library, settings, results) / sidecar_name(rel_path, settings.naming)


def sidecar_paths(
    library: str | os.PathLike,
    rel_paths: Iterable[str],
    settings: XmpSettings,
    results: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """The sidecar of each image; under Lightroom naming, of files sharing a folder and stem
    only one gets the short name (a raw file first, then by name), the others darktable's."""
    root = sidecar_root(library, settings, results)
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


# ------------------------------------------------------------------- records


def image_record(
    rows: Mapping[str, Mapping[str, Any] | None],
    people: Sequence[NamedFace] = (),
    settings: XmpSettings | None = None,
) -> XmpRecord:
    """The record of one image from its module rows (``{module: row or None}``; error rows
    are ignored) and its named faces. Pure: reads nothing."""
    settings = settings or XmpSettings()
    ok = {m: row for m, row in rows.items() if row and row.get("status", OK) == OK}
    captions, objects, ocr = ok.get("captions", {}), ok.get("objects", {}), ok.get("ocr", {})
    cloud, technical = ok.get("cloud", {}), ok.get("technical", {})
    aesthetic = ok.get("aesthetic", {}).get("aesthetic")
    labels = _unique(_label_names(objects.get("labels")))
    ocr_text = _text(ocr.get("text"))
    keywords = labels + _strings(cloud.get("keywords"))
    if settings.ocr_keywords and ocr_text:
        keywords += _unique(OCR_WORD.findall(ocr_text))[:MAX_OCR_KEYWORDS]
    fields = {
        "Caption": _text(captions.get("caption")),
        "Answers": tuple(_clean(f"{q}: {a}") for q, a in _answers(captions.get("answers"))),
        "Labels": tuple(labels),
        "OCRText": ocr_text,
        "CloudDescription": _text(cloud.get("description")),
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
        description=fields["Caption"] or fields["CloudDescription"],
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


# ------------------------------------------------------------------- one sidecar


def write_sidecar(path: str | os.PathLike, record: XmpRecord) -> bool:
    """Merge the record into the sidecar at ``path`` (created if missing). Returns True when
    the file was written, False when it already said this (left untouched).

    Raises ValueError for an existing file exiv2 cannot read as XMP (it is never replaced).
    """
    path = Path(path)
    old = path.read_bytes() if path.exists() else None
    with _open_packet(path, old) as image:
        new = _merged_packet(image, record, from_file=bool(old))
    if new is None or new == old:
        return False
    _atomic_write_bytes(path, new)
    return True


def _merged_packet(image: pyexiv2.ImageData, record: XmpRecord, from_file: bool) -> bytes | None:
    """The sidecar with the record merged in; None when it needs no change."""
    current = _read_xmp(image)
    digest = record.digest()
    if _value(current, f"{OURS}Digest") == digest:
        return None
    if record.is_empty() and f"{OURS}Generator" not in current:
        return None  # nothing to add to a sidecar that is not ours
    if from_file:
        # exiv2 mirrors a sidecar's XMP into Exif and IPTC when reading it and back into
        # XMP when writing it, which would bring back every value we delete.
        image.clear_exif()
        image.clear_iptc()
        current = _read_xmp(image)
    deletions, additions = merge(current, record, digest)
    deletions = {key: None for key in deletions if key in current}
    if deletions:  # each call re-encodes the packet
        image.modify_xmp(deletions)
    image.modify_xmp(additions)
    return image.get_bytes()


def _open_packet(path: Path, data: bytes | None) -> pyexiv2.ImageData:
    """The sidecar's XMP in exiv2 (close it: it holds C++ memory)."""
    _register_namespace()
    try:
        image = pyexiv2.ImageData(data or EMPTY_PACKET)
    except RuntimeError as error:
        raise ValueError(f"{path}: not a readable XMP sidecar ({error})") from error
    if image.get_mime_type() != "application/rdf+xml":
        mime = image.get_mime_type()
        image.close()
        raise ValueError(f"{path}: not an XMP sidecar ({mime})")
    return image


_registered = False


def _register_namespace() -> None:
    global _registered
    if not _registered:
        pyexiv2.set_log_level(3)  # exiv2 prints warnings on stdout; errors still raise
        pyexiv2.registerNs(NAMESPACE, PREFIX)
        _registered = True


def _read_xmp(image: pyexiv2.ImageData) -> dict[str, tuple[str, Any]]:
    """``{key: (exiv2 type name, value)}`` in document order."""
    return {k: (d["typeName"], d["value"]) for k, d in image.read_xmp_detail().items()}


def _value(current: Mapping[str, tuple[str, Any]], key: str) -> Any:
    return current[key][1] if key in current else None


def _list(current: Mapping[str, tuple[str, Any]], key: str) -> list[str]:
    value = _value(current, key)
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list) else [value]


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` under a fixed temporary name and rename it into place.

    Not :func:`imganalyzer.files.atomic_open`: its search for stale temporaries lists the
    folder on every write (quadratic over a photo folder of thousands), and its fsync costs
    milliseconds per new file. The fixed name needs no search (one writer per sidecar: a
    stale temporary is replaced), and only replacing a sidecar is fsynced: a new one lost
    in a crash is empty or absent, and the next run writes it again.
    """
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.imganalyzer.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as handle:
            handle.write(data)
            if mode is not None:
                os.fchmod(handle.fileno(), mode)
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


# ------------------------------------------------------------------- merging


def merge(
    current: Mapping[str, tuple[str, Any]], record: XmpRecord, digest: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pyexiv2 edits that turn ``current`` (:func:`_read_xmp`) into the merged sidecar:
    keys to delete, then keys to set (in order: an array's type before its items)."""
    deletions = {key: None for key in current if key.startswith(OURS)}
    additions: dict[str, Any] = {}
    added_keywords = _merge_bag(
        current, SUBJECT, "AddedKeywords", record.keywords, deletions, additions
    )
    added_people = _merge_bag(current, PEOPLE, "AddedPeople", record.people, deletions, additions)
    added_description = _merge_description(current, record.description, deletions, additions)
    added_rating = _merge_rating(current, record.rating, deletions, additions)
    added_regions = _merge_regions(current, record, deletions, additions)
    ours: dict[str, str | Sequence[str]] = {
        "Generator": GENERATOR,
        "Version": FORMAT_VERSION,
        "Digest": digest,
        **dict(record.fields),
        "AddedKeywords": added_keywords,
        "AddedPeople": added_people,
        "AddedRegions": added_regions,
        "AddedDescription": added_description or "",
        "AddedRating": added_rating or "",
    }
    for name, value in ours.items():
        additions.update(_property(f"{OURS}{name}", value))
    return deletions, additions


def _property(key: str, value: str | Sequence[str]) -> dict[str, Any]:
    if isinstance(value, str):
        return {key: value} if value else {}
    return _bag(key, value)


def _bag(key: str, items: Sequence[str], kind: str = "Bag") -> dict[str, Any]:
    """An XMP array as exiv2 keys (pyexiv2 would write every list as a Seq)."""
    if not items:
        return {}
    return {key: f'type="{kind}"', **{f"{key}[{i}]": item for i, item in enumerate(items, 1)}}


def _previous(current: Mapping[str, tuple[str, Any]], name: str) -> list[str]:
    return _list(current, f"{OURS}{name}")


def _merge_bag(
    current: Mapping[str, tuple[str, Any]],
    key: str,
    added_name: str,
    ours: Sequence[str],
    deletions: dict[str, Any],
    additions: dict[str, Any],
) -> list[str]:
    """Union of the user's entries and ours, without what we added before. Returns what we
    add (ours that the user does not already have)."""
    existing = _list(current, key)
    previous = set(_previous(current, added_name))
    kept = [item for item in existing if item not in previous]
    have = {item.casefold() for item in kept}
    added = [item for item in ours if item.casefold() not in have]
    if kept + added != existing:
        deletions[key] = None
        kind = _ARRAY_TYPES.get(current.get(key, ("XmpBag",))[0], "Bag")  # keep a Seq a Seq
        additions.update(_bag(key, kept + added, kind))
    return added


def _merge_description(
    current: Mapping[str, tuple[str, Any]],
    description: str | None,
    deletions: dict[str, Any],
    additions: dict[str, Any],
) -> str | None:
    """Our description goes in x-default unless the user wrote one there."""
    alternatives = _value(current, DESCRIPTION)
    alternatives = dict(alternatives) if isinstance(alternatives, dict) else {}
    previous = _value(current, f"{OURS}AddedDescription") or None
    ours = X_DEFAULT not in alternatives or alternatives[X_DEFAULT] == previous
    if not ours:
        return None
    if description:
        alternatives[X_DEFAULT] = description
    else:
        alternatives.pop(X_DEFAULT, None)
    if alternatives != _value(current, DESCRIPTION):
        deletions[DESCRIPTION] = None
        if alternatives:
            additions[DESCRIPTION] = alternatives
    return description


def _merge_rating(
    current: Mapping[str, tuple[str, Any]],
    rating: int | None,
    deletions: dict[str, Any],
    additions: dict[str, Any],
) -> str | None:
    """Our rating is set unless the user rated the image (or changed the rating we wrote)."""
    existing = _value(current, RATING)
    previous = _value(current, f"{OURS}AddedRating") or None
    if existing is not None and existing != previous:
        return None
    if rating is None:
        if existing is not None:
            deletions[RATING] = None
        return None
    if str(rating) != existing:
        deletions[RATING] = None
        additions[RATING] = str(rating)
    return str(rating)


def _merge_regions(
    current: Mapping[str, tuple[str, Any]],
    record: XmpRecord,
    deletions: dict[str, Any],
    additions: dict[str, Any],
) -> list[str]:
    """The user's regions kept (renumbered), ours from before replaced by ours now."""
    previous = set(_previous(current, "AddedRegions"))
    existing = _region_items(current)
    kept = [item for item in existing.values() if _item_key(item) not in previous]
    if len(kept) == len(existing) and not record.regions:
        return []
    for key in current:
        if key == REGION_LIST or key.startswith(REGION_LIST + "["):
            deletions[key] = None
    tree = [k for k in current if k == REGIONS or k.startswith(REGIONS + "/")]
    if not kept and not record.regions:
        others = [k for k in tree if k.startswith(REGIONS + "/mwg-rs:")]
        if all(k.startswith((DIMENSIONS, REGION_LIST)) for k in others):
            deletions.update({k: None for k in tree})  # nothing but our regions was there
        return []
    if REGIONS not in current:
        additions[REGIONS] = 'type="Struct"'
    if record.regions and (not kept or DIMENSIONS not in current):
        deletions.update({k: None for k in tree if k.startswith(DIMENSIONS)})
        w, h = record.region_size
        additions.update(
            {DIMENSIONS: 'type="Struct"', **_struct(DIMENSIONS, "stDim", w=w, h=h, unit="pixel")}
        )
    additions[REGION_LIST] = f'type="{_ARRAY_TYPES.get(_type(current, REGION_LIST), "Bag")}"'
    items = kept + [_region_datums(region) for region in record.regions]
    for index, item in enumerate(items, 1):
        for suffix, (type_name, value) in item.items():
            additions.update(_datum(f"{REGION_LIST}[{index}]{suffix}", type_name, value))
    return [region.key for region in record.regions]


def _region_datums(region: Region) -> dict[str, tuple[str, str]]:
    """One of our regions as read datums: ``{suffix: (type name, value)}``."""
    area = {f"/mwg-rs:Area/stArea:{k}": v for k, v in zip("xywh", region.values, strict=True)}
    return {
        "": ("XmpText", 'type="Struct"'),
        "/mwg-rs:Name": ("XmpText", region.name),
        "/mwg-rs:Type": ("XmpText", "Face"),
        "/mwg-rs:Area": ("XmpText", 'type="Struct"'),
        **{suffix: ("XmpText", value) for suffix, value in area.items()},
        "/mwg-rs:Area/stArea:unit": ("XmpText", "normalized"),
    }


def _type(current: Mapping[str, tuple[str, Any]], key: str) -> str:
    """An array's exiv2 type name; struct arrays read as ``type="Bag"`` text."""
    type_name, value = current.get(key, ("", ""))
    match = re.fullmatch(r'type="(\w+)"', value) if isinstance(value, str) else None
    return f"Xmp{match.group(1)}" if match else type_name


def _struct(key: str, prefix: str, **fields: Any) -> dict[str, str]:
    return {f"{key}/{prefix}:{name}": str(value) for name, value in fields.items()}


def _region_items(current: Mapping[str, tuple[str, Any]]) -> dict[int, dict[str, tuple]]:
    """``{index: {suffix: (type name, value)}}`` of the region list's items."""
    items: dict[int, dict[str, tuple]] = {}
    for key, datum in current.items():
        match = _REGION_ITEM.fullmatch(key)
        if match:
            items.setdefault(int(match.group(1)), {})[match.group(2)] = datum
    return dict(sorted(items.items()))


def _item_key(item: Mapping[str, tuple[str, Any]]) -> str:
    """The :attr:`Region.key` of a region read back (empty fields for what it lacks)."""
    names = ("/mwg-rs:Name",) + tuple(f"/mwg-rs:Area/stArea:{f}" for f in "xywh")
    return "|".join(str(item.get(name, ("", ""))[1]) for name in names)


def _datum(key: str, type_name: str, value: Any) -> dict[str, Any]:
    """One read datum written back under ``key`` (arrays of text keep their kind)."""
    if type_name in _ARRAY_TYPES and isinstance(value, list):
        return _bag(key, value, _ARRAY_TYPES[type_name]) or {
            key: f'type="{_ARRAY_TYPES[type_name]}"'
        }
    return {key: value}


# ------------------------------------------------------------------- the library


def write_sidecars(
    results: str | os.PathLike,
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
    results, library = Path(results), Path(library)
    view = current_shards(results, library, view_file)
    paths = (e.path for s in view.shards.values() for e in s.entries)
    targets = sidecar_paths(library, paths, settings, results)
    state_file = view.layout.xmp_state
    previous, state = _load_state(state_file), {}
    used = [m for m in RECORD_MODULES if m in modules or m == "technical"]
    report = XmpReport()
    named_faces = named_faces or {}
    for shard in view.shards:
        by_module = {module: view.rows(module, shard) for module in used}
        for entry in view.shards[shard].entries:
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
        return [NamedFace(name, tuple(box), None) for name, box in faces]
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
