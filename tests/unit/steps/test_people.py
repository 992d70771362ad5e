"""People: the clustering core on synthetic embeddings with known identities, and the
global step on a small results folder (catalog, faces rows and matrices, tiers)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import adjusted_rand_score

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.catalog.store import Catalog
from imganalyzer.cli.main import build_parser
from imganalyzer.cli.people import add_people_parser
from imganalyzer.decode.tiers import TierWriter, make_tiers
from imganalyzer.layout import Layout
from imganalyzer.results import ok_row, write_rows
from imganalyzer.steps.people import (
    face_id,
    load_people,
    merge_people,
    people_by_path,
    set_name,
    split_person,
    update_people,
)
from imganalyzer.steps.people_clusters import PeopleSettings, group_faces
from imganalyzer.steps.people_edits import Edits

DIM = 512
# Per-dimension noise giving two faces of one person a cosine similarity of ~0.7
# (distance ~0.3, ArcFace-like); random identities are ~orthogonal (distance ~1).
NOISE = 0.029


def identities(n: int, seed: int = 0) -> np.ndarray:
    centres = np.random.default_rng(seed).standard_normal((n, DIM))
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def samples(centre: np.ndarray, n: int, seed: int) -> np.ndarray:
    noisy = centre + NOISE * np.random.default_rng(seed).standard_normal((n, DIM))
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


def faces_of(centres: np.ndarray, per_person: int, seed: int, prefix: str = "f"):
    """ids, vectors and true person index of ``per_person`` faces of each centre."""
    ids, vectors, truth = [], [], []
    for k, centre in enumerate(centres):
        vectors.append(samples(centre, per_person, seed * 1000 + k))
        ids += [f"{prefix}{k}-{i}" for i in range(per_person)]
        truth += [k] * per_person
    return ids, np.concatenate(vectors), truth


def labels_of(grouping, ids: list[str]) -> list[int]:
    owner = {f: p for p, faces in grouping.members.items() for f in faces}
    return [owner.get(f, -1) for f in ids]


def test_clusters_recover_the_identities() -> None:
    ids, vectors, truth = faces_of(identities(5), 20, seed=1)
    grouping = group_faces(ids, vectors, {}, Edits())
    assert adjusted_rand_score(truth, labels_of(grouping, ids)) == pytest.approx(1.0)
    assert sorted(grouping.members) == [1, 2, 3, 4, 5] and grouping.unassigned == []
    assert grouping.new_people == 5 and grouping.next_id == 6


def test_new_faces_join_their_people_and_leftovers_form_new_ids() -> None:
    centres = identities(6)
    ids, vectors, _ = faces_of(centres[:5], 15, seed=1)
    first = group_faces(ids, vectors, {}, Edits())
    person_of = {k: labels_of(first, [f"f{k}-0"])[0] for k in range(5)}
    new_ids, new_vectors, new_truth = faces_of(centres, 5, seed=2, prefix="n")
    stray = identities(1, seed=99).astype(np.float32)  # one face of nobody known
    all_ids = ids + new_ids + ["stray"]
    all_vectors = np.concatenate([vectors, new_vectors, stray])
    second = group_faces(all_ids, all_vectors, first.members, Edits(), first.next_id)
    assert {p: second.members[p][:15] for p in first.members} == first.members
    for face, k in zip(new_ids, new_truth, strict=True):
        expected = person_of.get(k, 6)  # the sixth identity is new: the next id
        assert labels_of(second, [face]) == [expected]
    assert second.kept == 75 and second.matched == 25 and second.clustered == 5
    assert second.unassigned == ["stray"] and second.next_id == 7


def test_faces_that_disappear_leave_and_unnamed_empty_people_are_dropped() -> None:
    ids, vectors, _ = faces_of(identities(2), 4, seed=1)
    first = group_faces(ids, vectors, {}, Edits())
    edits = Edits(names={1: "Alice"})
    remaining = [f for f in ids if f not in first.members[1] and f not in first.members[2][:2]]
    keep = [ids.index(f) for f in remaining]
    second = group_faces(
        remaining, vectors[keep], first.members, edits, first.next_id, first.centroids
    )
    assert second.members == {1: [], 2: first.members[2][2:]}  # Alice stays, empty
    keep_none = group_faces([], np.zeros((0, DIM)), first.members, Edits(), first.next_id)
    assert keep_none.members == {} and keep_none.dropped_people == 2
    # Alice's faces come back: they join her through her kept centroid; ids are not reused.
    back = group_faces(ids, vectors, second.members, edits, second.next_id, second.centroids)
    assert back.members[1] == first.members[1] and back.next_id == 3


def test_recluster_keeps_ids_names_and_splits() -> None:
    ids, vectors, _ = faces_of(identities(3), 10, seed=1)
    first = group_faces(ids, vectors, {}, Edits())
    # The user splits three faces off person 2 into person 4 (as the CLI records it).
    moved = first.members[2][:3]
    edits = Edits(
        names={2: "Bob"}, moved={f: 4 for f in moved}, cannot_link={f: [2] for f in moved}, max_id=4
    )
    for recluster in (False, True):
        grouping = group_faces(ids, vectors, first.members, edits, first.next_id, None,
                               PeopleSettings.defaults(), recluster)  # fmt: skip
        assert grouping.members[4] == moved
        assert grouping.members[2] == first.members[2][3:]
        assert grouping.members[1] == first.members[1] and grouping.members[3] == first.members[3]
        assert grouping.next_id == 5


def test_split_faces_never_rejoin_their_old_person_when_they_come_back() -> None:
    ids, vectors, _ = faces_of(identities(1), 6, seed=1)
    first = group_faces(ids, vectors, {}, Edits())
    face = first.members[1][0]
    edits = Edits(cannot_link={face: [1]})  # split off, then its new person was dropped
    grouping = group_faces(ids, vectors, first.members, edits, first.next_id)
    assert face not in grouping.members[1] and face in grouping.unassigned


def test_merge_resolves_ids_and_keeps_the_smallest() -> None:
    ids, vectors, _ = faces_of(identities(3), 5, seed=1)
    first = group_faces(ids, vectors, {}, Edits())
    edits = Edits(merged={3: 1})
    grouping = group_faces(ids, vectors, first.members, edits, first.next_id)
    assert sorted(grouping.members) == [1, 2]
    assert set(grouping.members[1]) == set(first.members[1]) | set(first.members[3])


# ---------------------------------------------------------------- the global step on files

TIER = {"detect": 160}
ORIGINAL = (320, 240)  # width, height: the detect tier is 160 x 120 (half size)
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


class FakeResults:
    """A library of empty-ish image files and, per shard, the catalog manifest, technical
    rows, a detect tier with a coloured square at each face and faces rows + matrix."""

    def __init__(self, root: Path) -> None:
        self.library, self.results = root / "library", root / "results"
        self.layout = Layout(self.results)
        self.catalog = Catalog(self.layout)
        self.library.mkdir(parents=True)
        self.mtime = 1_600_000_000 * 10**9
        self.centres = identities(len(COLOURS), seed=5)
        self.seed = 0

    def add_shard(self, photos: dict[str, list[int]]) -> str:
        """photos: path -> the identity of each face in it (one face per identity)."""
        shards = self.catalog.shard_ids()
        shard = f"{int(shards[-1].split('-')[0]) + 1 if shards else 1:06d}-00000"
        entries = [self._file(path) for path in photos]
        write_manifest(self.catalog.manifest_path(shard), entries)
        technical = [ok_row(e, {"width": ORIGINAL[0], "height": ORIGINAL[1]}) for e in entries]
        write_rows(self.results / "technical" / f"{shard}.jsonl", technical)
        rows, vectors = [], []
        tiers = self.results / "tiers" / f"{shard}.zarr"
        with TierWriter(tiers, n_images=len(entries), tiers=TIER) as writer:
            for index, (entry, people) in enumerate(zip(entries, photos.values(), strict=True)):
                rgb = np.zeros((ORIGINAL[1], ORIGINAL[0], 3), dtype=np.uint8)
                faces = []
                for k in people:
                    box = self.box(k)
                    rgb[box[1] : box[3], box[0] : box[2]] = COLOURS[k]
                    self.seed += 1
                    vectors.append(samples(self.centres[k], 1, self.seed)[0])
                    faces.append({"box": [float(v) for v in box], "score": 0.9,
                                  "embedding_row": len(vectors) - 1})  # fmt: skip
                writer.write(index, make_tiers(rgb, TIER))
                rows.append(ok_row(entry, {"model": "test", "n_faces": len(faces), "faces": faces}))
        write_rows(self.results / "faces" / f"{shard}.jsonl", rows)
        np.save(self.results / "faces" / f"{shard}.npy", np.array(vectors, dtype=np.float16))
        return shard

    @staticmethod
    def box(k: int) -> list[int]:
        """Identity k's face: a 60 px square at a distinct place (original pixels)."""
        return [20 + 70 * k, 40, 80 + 70 * k, 100]

    def delete(self, path: str) -> None:
        (self.library / path).unlink()

    def _file(self, path: str) -> Entry:
        file = self.library / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(b"jpeg " + os.fsencode(path))
        self.mtime += 10**9
        os.utime(file, ns=(self.mtime, self.mtime))
        return Entry(path, file.stat().st_size, self.mtime)

    def update(self, recluster: bool = False, **settings) -> object:
        """The people step at the schema's settings (``settings`` changed)."""
        people = PeopleSettings.defaults(**settings)
        return update_people(self.layout, self.library, people, recluster=recluster)

    def person_of(self, path: str) -> set[int]:
        people = load_people(self.layout)
        return {p.id for p in people.people.values() for f in p.faces
                if people.faces[f].path == path}  # fmt: skip


@pytest.fixture
def library(tmp_path: Path) -> FakeResults:
    fake = FakeResults(tmp_path)
    fake.add_shard({f"a/{i}.jpg": [0, 1] if i % 2 else [0] for i in range(6)})
    return fake


def test_people_file_crops_and_names_for_the_index(library: FakeResults) -> None:
    report = library.update()
    assert report.faces == 9 and report.people == 2 and report.unassigned == 0
    people = load_people(library.layout)
    alice = library.person_of("a/0.jpg").pop()
    bob = (library.person_of("a/1.jpg") - {alice}).pop()
    assert len(people.people[alice].faces) == 6 and len(people.people[bob].faces) == 3
    crop = np.asarray(Image.open(library.results / "faces" / people.people[bob].crop))
    centre = crop[crop.shape[0] // 2, crop.shape[1] // 2].astype(int)
    assert np.abs(centre - COLOURS[1]).max() < 40  # Bob's square, cut from the tier
    set_name(library.layout, alice, "Alice")
    labels = people_by_path(library.layout)
    assert labels["a/0.jpg"] == ["Alice"] and "a/1.jpg" in labels
    assert people_by_path(library.layout, include_unnamed=True)["a/1.jpg"] == [
        "Alice", f"person {bob}"
    ]  # fmt: skip
    entry = next(f for f in people.faces.values() if f.path == "a/0.jpg")
    size = (library.library / "a/0.jpg").stat()
    assert face_id("a/0.jpg", size.st_size, size.st_mtime_ns, entry.box) in people.faces


def test_names_merges_and_splits_survive_new_images_and_reclustering(
    library: FakeResults,
) -> None:
    library.update()
    alice = library.person_of("a/0.jpg").pop()
    bob = (library.person_of("a/1.jpg") - {alice}).pop()
    set_name(library.layout, alice, "Alice")
    edits_before = library.layout.people_edits.read_text()
    library.add_shard({"b/new.jpg": [0, 1], "b/carol.jpg": [2], "b/carol2.jpg": [2]})
    report = library.update()
    assert library.person_of("b/new.jpg") == {alice, bob} and report.matched == 2
    carol = library.person_of("b/carol.jpg").pop()
    assert carol not in (alice, bob) and report.new_people == 1
    assert library.layout.people_edits.read_text() == edits_before
    # Split Alice's face in a/2.jpg off into a new person; merge Carol into Bob.
    split = split_person(library.layout, alice, paths=["a/2.jpg"])
    merged = merge_people(library.layout, [carol, bob])
    assert merged.id == min(bob, carol)
    for recluster in (False, True, False):
        library.update(recluster=recluster)
        people = load_people(library.layout)
        assert people.people[alice].name == "Alice"
        assert library.person_of("a/2.jpg") == {split.id}
        assert (
            library.person_of("b/carol.jpg")
            == {merged.id}
            == library.person_of("a/1.jpg") - {alice}
        )
        assert carol not in people.people or carol == merged.id


def test_a_deleted_images_faces_leave_their_person(library: FakeResults) -> None:
    library.update()
    bob = (library.person_of("a/1.jpg") - library.person_of("a/0.jpg")).pop()
    for path in ("a/1.jpg", "a/3.jpg"):
        library.delete(path)
    library.update()
    people = load_people(library.layout)
    assert [people.faces[f].path for f in people.people[bob].faces] == ["a/5.jpg"]
    assert all(f.path not in ("a/1.jpg", "a/3.jpg") for f in people.faces.values())
    library.delete("a/5.jpg")
    library.update()
    assert bob not in load_people(library.layout).people  # unnamed and empty: dropped
    library.add_shard({"c/x.jpg": [3], "c/y.jpg": [3]})
    library.update()
    assert library.person_of("c/x.jpg") == {bob + 1}  # a new id, never a reused one


def test_cli_lists_names_merges_and_splits(
    library: FakeResults, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"library: {library.library}\nresults: {library.results}\n")
    parser = build_parser()
    if "people" not in parser._subparsers._group_actions[0].choices:  # until cli.py wires it
        add_people_parser(parser._subparsers._group_actions[0])

    def run(*argv: str) -> str:
        args = parser.parse_args([*argv, "--config", str(config)])
        assert args.func(args) == 0
        return capsys.readouterr().out

    run("people", "update")
    listed = json.loads(run("people", "list", "--json"))
    assert sorted(p["n_faces"] for p in listed) == [3, 6]
    alice = next(p["id"] for p in listed if p["n_faces"] == 6)
    assert "Alice" in run("people", "name", str(alice), "Alice")
    run("people", "alias", str(alice), "Ali")
    shown = json.loads(run("people", "show", str(alice), "--json"))
    assert shown["name"] == "Alice" and shown["aliases"] == ["Ali"]
    face = shown["faces"][0]["face"]
    out = run("people", "split", str(alice), "--faces", face)
    new = int(out.split()[1].rstrip(":"))
    run("people", "merge", str(new), str(alice))
    assert json.loads(run("people", "show", str(new), "--json"))["id"] == alice
    args = parser.parse_args(["people", "show", "999", "--config", str(config)])
    assert args.func(args) == 1  # a one-line error, exit 1


def test_names_that_are_not_utf8_survive_the_people_file(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from imganalyzer.cli.main import main

    fake = FakeResults(tmp_path)
    hostile = os.fsdecode(b"old/caf\xe9.jpg")
    fake.add_shard({hostile: [0], "a/0.jpg": [0], "a/1.jpg": [0]})
    fake.update(min_cluster_size=2)
    assert fake.person_of(hostile)  # people.json read back with the exact path
    (person,) = fake.person_of(hostile)
    config = tmp_path / "config.yaml"
    config.write_text(f"library: {fake.library}\nresults: {fake.results}\n")
    assert main(["people", "show", str(person), "--config", str(config)]) == 0
    assert "old/caf\\xe9.jpg" in capsys.readouterr().out
    assert main(["people", "show", str(person), "--json", "--config", str(config)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert "old/caf\\xe9.jpg" in {face["path"] for face in shown["faces"]}
