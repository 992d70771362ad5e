"""The clustering core of the people step on synthetic embeddings with known identities:
new faces join their people, ids, names, merges and splits are kept."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from imganalyzer.steps.people_clusters import PeopleSettings, group_faces
from imganalyzer.steps.people_edits import Edits
from tests.support.people_results import DIM, faces_of, identities


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
