"""The user's edits of the people: merges followed to their end, the JSON form, and how
merges, split moves and cannot-link constraints are re-applied to the people of a run."""

from __future__ import annotations

import json

from imganalyzer.steps.people_edits import FORMAT_VERSION, Edits, apply_edits, named_people


def test_resolve_follows_merges_to_the_last_person_and_stops_on_a_cycle() -> None:
    edits = Edits(merged={5: 3, 3: 1, 7: 8, 8: 7})
    assert edits.resolve(5) == 1 and edits.resolve(3) == 1 and edits.resolve(2) == 2
    assert edits.resolve(7) in (7, 8)  # a cycle (a hand-edited file) ends instead of hanging


def test_edits_survive_the_json_file_with_integer_ids() -> None:
    edits = Edits(
        names={2: "Alice", 10: "Bob"},
        aliases={2: ["Ali", "A."]},
        merged={4: 2},
        moved={"face-a": 11},
        cannot_link={"face-a": [2, 4]},
        max_id=11,
    )
    stored = json.loads(json.dumps(edits.as_json()))
    assert stored["format"] == FORMAT_VERSION and stored["names"] == {"2": "Alice", "10": "Bob"}
    assert Edits.from_json(stored) == edits
    assert Edits.from_json({}) == Edits()  # a file from before any edit


def test_merges_join_the_faces_of_both_people() -> None:
    members = {1: {"a", "b"}, 2: {"c"}, 3: {"d"}}
    apply_edits(members, Edits(merged={3: 2, 2: 1}), present={"a", "b", "c", "d"})
    assert members == {1: {"a", "b", "c", "d"}}


def test_a_split_moves_its_faces_and_waits_for_faces_not_present() -> None:
    members = {1: {"a", "b", "c"}}
    edits = Edits(moved={"b": 4, "gone": 4}, cannot_link={"b": [1]}, max_id=4)
    apply_edits(members, edits, present={"a", "b", "c"})
    assert members == {1: {"a", "c"}, 4: {"b"}}  # "gone" is not here: nothing made of it


def test_cannot_link_takes_a_face_out_of_a_forbidden_person_only() -> None:
    members = {1: {"a", "b"}, 2: {"c"}, 3: {"e"}}
    # "a" may not be with 1; "c" may not be with 3, which was merged into 2: also removed;
    # "e" is forbidden from 1 but sits in 3: it stays.
    edits = Edits(merged={3: 2}, cannot_link={"a": [1], "c": [3], "e": [1]})
    apply_edits(members, edits, present={"a", "b", "c", "e"})
    assert members == {1: {"b"}, 2: {"e"}}


def test_a_face_moved_into_a_person_stays_there_although_it_was_forbidden_before() -> None:
    members = {1: {"a"}, 2: {"b"}}
    edits = Edits(moved={"a": 2}, cannot_link={"a": [2]})  # the user put it back by hand
    apply_edits(members, edits, present={"a", "b"})
    assert members == {1: set(), 2: {"a", "b"}}


def test_named_people_are_counted_after_merges() -> None:
    assert named_people(Edits(names={3: "Carol", 5: "Dan"}, merged={3: 1})) == {1, 5}
