"""People: the library's current faces grouped into persons whose ids and names persist.

``update_people`` (the global ``faces_cluster`` step) gathers the faces of every current
image from ``faces/<shard>.jsonl`` and ``.npy`` and updates ``faces/people.json``:

- a face keeps the person it had (faces are identified by a hash of the image version and
  the box, so they stay the same across runs while the image is unchanged);
- new faces join the nearest person whose centroid lies within ``match_distance`` (cosine);
- only the leftovers are clustered (DBSCAN, ``cluster_distance``, ``min_cluster_size``);
  each cluster becomes a person with a new id, the rest stay unassigned and are retried
  next run. Ids are never reused.
- faces of deleted or superseded images drop out; a person left with no faces is dropped,
  unless the user named it: a named person stays (with its last centroid, so that its
  faces join it again when the photos come back).

User edits (``imganalyzer people name/alias/merge/split``) are recorded in
``faces/people_edits.json``, which ``update_people`` never writes, and are re-applied on
every run, so names, merges and splits survive new images and ``recluster=True`` (which
clusters every face afresh and gives each cluster the id of the old person it shares most
faces with). A split records that the moved faces cannot be in their old person.

Each person has a representative face (the one nearest its centroid) and a crop of it,
``faces/crops/<id>.jpg``, cut from the ``detect`` tier (or the thumbnail).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from imganalyzer.catalog.current import CurrentView, current_shards
from imganalyzer.files import atomic_open, atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.results import OK
from imganalyzer.steps.people_clusters import PeopleSettings, group_faces
from imganalyzer.steps.people_edits import FORMAT_VERSION, Edits, apply_edits, named_people
from imganalyzer.store import ResultsStore, row_identity

log = logging.getLogger(__name__)


CROP_LONG_EDGE = 160
CROP_MARGIN = 0.25  # of the box size, on each side


def face_id(path: str, size: int, mtime_ns: int, box: Sequence[float]) -> str:
    """A face's stable id: its image version and its box (rounded to whole pixels)."""
    key = "\0".join([path, str(size), str(mtime_ns), *(f"{round(v)}" for v in box)])
    return hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).hexdigest()


@dataclass
class Person:
    id: int
    faces: list[str] = field(default_factory=list)
    name: str | None = None
    aliases: list[str] = field(default_factory=list)
    representative: str | None = None  # face id
    crop: str | None = None  # relative to faces/

    @property
    def label(self) -> str:
        return self.name or f"person {self.id}"


@dataclass
class FaceRecord:
    """Where a face lies: its image, the image's shard and manifest row, the face's index
    in the row, its box (original pixels) and detection score."""

    path: str
    shard: str
    row: int
    face: int
    box: list[float]
    score: float


@dataclass
class PeopleFile:
    """``people.json`` in memory (plus the centroids kept beside it)."""

    people: dict[int, Person] = field(default_factory=dict)
    faces: dict[str, FaceRecord] = field(default_factory=dict)
    unassigned: list[str] = field(default_factory=list)
    next_id: int = 1
    centroids: dict[int, np.ndarray] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "next_id": self.next_id,
            "people": [asdict(p) for _, p in sorted(self.people.items())],
            "unassigned": self.unassigned,
            "faces": {k: asdict(v) for k, v in self.faces.items()},
        }


def load_people(layout: Layout) -> PeopleFile:
    """The people file (empty if there is none yet), with the user's edits applied."""
    path = layout.people
    people = PeopleFile()
    if path.is_file():
        # a path's undecodable byte is written as itself (atomic_write_text): read it back
        data = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
        people = PeopleFile(
            people={p["id"]: Person(**p) for p in data["people"]},
            faces={k: FaceRecord(**v) for k, v in data["faces"].items()},
            unassigned=list(data["unassigned"]),
            next_id=int(data["next_id"]),
        )
    centroids = layout.people_centroids
    if centroids.is_file():
        with np.load(centroids) as stored:
            people.centroids = dict(zip(stored["ids"].tolist(), stored["centroids"], strict=True))
    _apply_to_file(people, load_edits(layout))
    return people


def load_edits(layout: Layout) -> Edits:
    path = layout.people_edits
    if not path.is_file():
        return Edits()
    return Edits.from_json(json.loads(path.read_text(encoding="utf-8", errors="surrogateescape")))


def save_edits(layout: Layout, edits: Edits) -> None:
    text = json.dumps(edits.as_json(), indent=2, ensure_ascii=False)
    atomic_write_text(layout.people_edits, text + "\n")


def save_people(layout: Layout, people: PeopleFile) -> None:
    ids = sorted(people.centroids)
    with atomic_open(layout.people_centroids, "wb") as handle:
        stacked = np.stack([people.centroids[p] for p in ids]) if ids else np.zeros((0, 0))
        np.savez(handle, ids=np.array(ids, dtype=np.int64), centroids=stacked.astype(np.float32))
    atomic_write_text(layout.people, json.dumps(people.as_json(), ensure_ascii=False))


def _apply_to_file(people: PeopleFile, edits: Edits) -> None:
    """Re-apply the edits to a loaded file's memberships, names and aliases."""
    members = {p: set(person.faces) for p, person in people.people.items()}
    apply_edits(members, edits, people.faces)
    for named in named_people(edits):
        members.setdefault(named, set())
    order = {face: i for i, face in enumerate(people.faces)}
    old = people.people
    people.people = {}
    for pid in sorted(members):
        before = old.get(pid, Person(pid))
        faces = sorted(members[pid], key=order.__getitem__)
        representative = before.representative if before.representative in members[pid] else None
        crop = before.crop if representative else None
        people.people[pid] = Person(pid, faces, None, [], representative, crop)
    for pid, person in people.people.items():
        person.name = edits.names.get(pid)
        person.aliases = list(edits.aliases.get(pid, []))
    in_people = {face for faces in members.values() for face in faces}
    people.unassigned = [face for face in people.faces if face not in in_people]
    people.next_id = max(people.next_id, edits.max_id + 1)


def people_by_path(layout: Layout, include_unnamed: bool = False) -> dict[str, list[str]]:
    """Image path -> names and aliases of the named people in it (and ``person <id>`` of
    unnamed ones if ``include_unnamed``), for the search index."""
    people = load_people(layout)
    labels: dict[str, list[str]] = {}
    for person in people.people.values():
        if person.name is None and not include_unnamed:
            continue
        names = [person.label, *person.aliases]
        for face in person.faces:
            found = labels.setdefault(people.faces[face].path, [])
            found.extend(name for name in names if name not in found)
    return labels


def named_faces(layout: Layout) -> dict[str, list[tuple[str, list[float]]]]:
    """Image path -> (name, box in original pixels) of every face of a named person (for
    XMP face regions)."""
    people = load_people(layout)
    found: dict[str, list[tuple[str, list[float]]]] = {}
    for person in people.people.values():
        if person.name is None:
            continue
        for face in person.faces:
            record = people.faces[face]
            found.setdefault(record.path, []).append((person.name, record.box))
    return found


@dataclass
class PeopleReport:
    faces: int
    people: int
    named: int
    kept: int
    matched: int
    clustered: int
    unassigned: int
    new_people: int
    dropped_people: int
    crops_written: int

    def summary(self) -> str:
        return (
            f"people: {self.faces} faces in {self.people} people ({self.named} named); "
            f"{self.kept} kept their person, {self.matched} joined one, {self.clustered} "
            f"formed {self.new_people} new people, {self.unassigned} unassigned; "
            f"{self.dropped_people} people dropped, {self.crops_written} crops written"
        )


def update_people(
    layout: Layout,
    library: str | os.PathLike,
    settings: PeopleSettings,
    recluster: bool = False,
    threads: int = 2,
    view_file: str | os.PathLike | None = None,
) -> PeopleReport:
    """Update ``faces/people.json`` from the faces of the library's current images
    (``view_file``: the run's recorded library view, else the library is scanned)."""
    view = current_shards(layout, library, view_file)
    store = ResultsStore(layout)
    records, vectors = gather_faces(store, view)
    ids = list(records)
    previous = load_people(layout)
    edits = load_edits(layout)
    grouping = group_faces(
        ids, vectors, {p: person.faces for p, person in previous.people.items()}, edits,
        previous.next_id, previous.centroids, settings, recluster, threads,
    )  # fmt: skip
    people = PeopleFile(
        faces=records, unassigned=grouping.unassigned, next_id=grouping.next_id,
        centroids=grouping.centroids,
    )  # fmt: skip
    index = {face: i for i, face in enumerate(ids)}
    crops = 0
    for pid, faces in grouping.members.items():
        person = Person(pid, faces, edits.names.get(pid), list(edits.aliases.get(pid, [])))
        before = previous.people.get(pid)
        centroid = grouping.centroids.get(pid)
        person.representative = _representative(faces, vectors, index, centroid)
        if person.representative is not None:
            person.crop, written = _crop(store, person, records[person.representative], before)
            crops += written
        people.people[pid] = person
    save_people(layout, people)
    report = PeopleReport(
        faces=len(ids), people=len(people.people),
        named=sum(1 for p in people.people.values() if p.name), kept=grouping.kept,
        matched=grouping.matched, clustered=grouping.clustered,
        unassigned=len(grouping.unassigned), new_people=grouping.new_people,
        dropped_people=grouping.dropped_people, crops_written=crops,
    )  # fmt: skip
    log.info("%s", report.summary())
    return report


def gather_faces(
    store: ResultsStore, view: CurrentView
) -> tuple[dict[str, FaceRecord], np.ndarray]:
    """Every face of the current images: id -> record, and (n, d) float32 embeddings."""
    records: dict[str, FaceRecord] = {}
    blocks: list[np.ndarray] = []
    for shard, current in view.shards.items():
        if not (store.has_rows("faces", shard) and store.has_array("faces", shard)):
            continue
        matrix = store.array("faces", shard, mmap=True)
        rows = []
        # current rows only, at the file's current path; a face's id comes from the
        # catalogued identity, so that a moved file keeps its faces' names
        for manifest_row, row in store.numbered_rows("faces", current):
            if row["status"] != OK:
                continue
            for k, face in enumerate(row.get("faces", ())):
                fid = face_id(*row_identity(row), face["box"])
                if fid in records:  # two identical boxes in one image: keep the first
                    continue
                records[fid] = FaceRecord(
                    row["path"], shard, manifest_row, k, face["box"], face["score"]
                )
                rows.append(face["embedding_row"])
        if rows:
            blocks.append(np.asarray(matrix[rows], dtype=np.float32))
    dim = blocks[0].shape[1] if blocks else 0
    return records, np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)


def _representative(
    faces: list[str], vectors: np.ndarray, index: dict[str, int], centroid: np.ndarray | None
) -> str | None:
    """The face nearest the person's centroid."""
    if not faces or centroid is None:
        return faces[0] if faces else None
    return faces[int(np.argmax(vectors[[index[f] for f in faces]] @ centroid))]


def _crop(
    store: ResultsStore, person: Person, record: FaceRecord, before: Person | None
) -> tuple[str | None, int]:
    """The person's crop file (relative to faces/) and 1 if it was (re)written now."""
    layout = store.layout
    target = layout.face_crop(str(person.id))
    relative = target.relative_to(layout.module_dir("faces")).as_posix()
    if before and before.representative == person.representative and target.is_file():
        return relative, 0
    image = _source_image(store, record)
    if image is None:
        log.debug("people: no tier or thumbnail for %s: no crop", record.path)
        return None, 0
    rgb, scale = image
    x0, y0, x1, y1 = (v * scale for v in record.box)
    margin = CROP_MARGIN * max(x1 - x0, y1 - y0)
    height, width = rgb.shape[:2]
    left, top = max(0, int(x0 - margin)), max(0, int(y0 - margin))
    right, bottom = min(width, int(np.ceil(x1 + margin))), min(height, int(np.ceil(y1 + margin)))
    if right <= left or bottom <= top:
        return None, 0
    from PIL import Image

    crop = Image.fromarray(np.ascontiguousarray(rgb[top:bottom, left:right]))
    crop.thumbnail((CROP_LONG_EDGE, CROP_LONG_EDGE), Image.Resampling.LANCZOS)
    with atomic_open(target, "wb") as handle:
        crop.save(handle, format="JPEG", quality=90)
    return relative, 1


def _source_image(store: ResultsStore, record: FaceRecord) -> tuple[np.ndarray, float] | None:
    """The face's image from the detect tier (else the thumbnail) and tier px per original px."""
    technical = store.image_rows(record.shard, record.row, ["technical"]).get("technical", {})
    original_width = technical.get("width")
    tiers = store.layout.tiers(record.shard)
    rgb = None
    if tiers.is_dir():
        from imganalyzer.decode.tiers import TierReader

        reader = TierReader(tiers)
        if "detect" in reader.tiers:
            rgb = np.asarray(reader.image("detect", record.row))
    if rgb is None:
        from imganalyzer.decode.thumbnails import read_thumbnail

        thumbnails = store.layout.thumbnails(record.shard)
        jpeg = read_thumbnail(thumbnails, record.row) if thumbnails.is_file() else None
        if jpeg is None:
            return None
        from PIL import Image

        rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    return rgb, rgb.shape[1] / (original_width or rgb.shape[1])


def set_name(layout: Layout, person_id: int, name: str) -> Person:
    """Name a person (``people name``); the name survives every later run."""
    return _edit(layout, person_id, lambda edits, pid: edits.names.__setitem__(pid, name))


def add_alias(layout: Layout, person_id: int, alias: str) -> Person:
    """Give a person another name that search also finds (``people alias``)."""

    def change(edits: Edits, pid: int) -> None:
        aliases = edits.aliases.setdefault(pid, [])
        if alias not in aliases:
            aliases.append(alias)

    return _edit(layout, person_id, change)


def merge_people(layout: Layout, person_ids: Sequence[int]) -> Person:
    """Merge people into the one with the smallest id; the others' names become aliases."""
    people, edits = load_people(layout), load_edits(layout)
    ids = sorted({_existing(people, edits, pid) for pid in person_ids})
    if len(ids) < 2:
        raise ValueError("merge needs at least two different people")
    target, others = ids[0], ids[1:]
    names = [n for n in (edits.names.get(p) for p in ids) if n]
    aliases = [a for p in ids for a in ([edits.names[p]] if p in edits.names else [])]
    aliases += [a for p in ids for a in edits.aliases.get(p, [])]
    if names:
        edits.names[target] = edits.names.get(target) or names[0]
    kept = [a for a in dict.fromkeys(aliases) if a != edits.names.get(target)]
    if kept:
        edits.aliases[target] = kept
    for other in others:
        edits.merged[other] = target
        # Pinned to the target, so that re-clustering from scratch keeps them together.
        edits.moved.update(dict.fromkeys(people.people[other].faces, target))
        edits.names.pop(other, None)
        edits.aliases.pop(other, None)
    merged = set(ids)
    for face, forbidden in list(edits.cannot_link.items()):
        if edits.resolve(edits.moved.get(face, -1)) in merged or any(
            edits.resolve(p) in merged for p in forbidden
        ):
            left = [p for p in forbidden if edits.resolve(p) not in merged]
            if left:
                edits.cannot_link[face] = left
            else:
                del edits.cannot_link[face]
    return _save_edit(layout, people, edits, target)


def split_person(
    layout: Layout,
    person_id: int,
    face_ids: Sequence[str] = (),
    paths: Sequence[str] = (),
) -> Person:
    """Move faces (by id, or all of the person's faces in the given images) to a new person
    that re-clustering never joins back to this one."""
    people, edits = load_people(layout), load_edits(layout)
    pid = _existing(people, edits, person_id)
    own = people.people[pid].faces
    chosen = [f for f in own if f in set(face_ids) or people.faces[f].path in set(paths)]
    unknown = set(face_ids) - set(own)
    if unknown:
        raise ValueError(f"faces not in person {pid}: {', '.join(sorted(unknown))}")
    if not chosen:
        raise ValueError(f"person {pid} has no face in {', '.join(paths) or 'the given faces'}")
    new = max(people.next_id, edits.max_id + 1)
    edits.max_id = new
    for face in chosen:
        edits.moved[face] = new
        edits.cannot_link.setdefault(face, [])
        if pid not in edits.cannot_link[face]:
            edits.cannot_link[face].append(pid)
    return _save_edit(layout, people, edits, new)


def _edit(layout: Layout, person_id: int, change: Callable[[Edits, int], None]) -> Person:
    people, edits = load_people(layout), load_edits(layout)
    pid = _existing(people, edits, person_id)
    change(edits, pid)
    return _save_edit(layout, people, edits, pid)


def _existing(people: PeopleFile, edits: Edits, person_id: int) -> int:
    pid = edits.resolve(int(person_id))
    if pid not in people.people:
        raise LookupError(f"no person {person_id} (see `imganalyzer people list`)")
    return pid


def _save_edit(layout: Layout, people: PeopleFile, edits: Edits, pid: int) -> Person:
    save_edits(layout, edits)
    _apply_to_file(people, edits)
    save_people(layout, people)
    return people.people[pid]
