"""The people step on a small results folder (catalog, faces rows and matrices, tiers): the
people file, crops, names for the index, and edits that survive new images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imganalyzer.steps.people import (
    face_id,
    load_people,
    merge_people,
    people_by_path,
    set_name,
    split_person,
)
from tests.support.people_results import COLOURS, FakeResults


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
