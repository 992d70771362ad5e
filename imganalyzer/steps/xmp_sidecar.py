"""One XMP sidecar: what we write for an image (:class:`XmpRecord`), merged into the packet
the sidecar holds and written atomically with exiv2 (pyexiv2).

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
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyexiv2

NAMESPACE = "http://ns.imganalyzer.org/1.0/"
PREFIX = "imganalyzer"
GENERATOR = "imganalyzer"
FORMAT_VERSION = "1"  # bump when what a record writes changes: every sidecar is then rewritten


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
    if record.regions and record.region_size and (not kept or DIMENSIONS not in current):
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
