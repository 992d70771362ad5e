"""Offline place names from GPS positions."""

from __future__ import annotations

import pytest

from imganalyzer.decode.places import place_of


@pytest.mark.parametrize(
    ("position", "place", "country"),
    [
        ((48.8583, 2.2945), "Paris", "France"),  # Eiffel Tower: nearest centre is Vanves
        ((48.8049, 2.1204), "Versailles", "France"),  # a town of its own near Paris
        ((40.7061, -73.9969), "New York City", "United States"),
        ((35.6586, 139.7454), "Tokyo", "Japan"),
        ((-33.8568, 151.2153), "Sydney", "Australia"),
    ],
)
def test_places_are_the_towns_people_have_in_mind(position, place, country) -> None:
    found = place_of(*position)
    assert found is not None
    assert (found.place, found.country) == (place, country)


def test_no_place_far_from_any_town_or_without_a_position() -> None:
    assert place_of(40.0, -40.0) is None  # the middle of the Atlantic
    assert place_of(0.0, 0.0) is None  # what broken GPS units write
    assert place_of(None, 2.0) is None
    assert place_of(91.0, 0.0) is None


def test_the_parsed_towns_are_cached_and_an_unwritable_cache_is_no_error(
    tmp_path, monkeypatch
) -> None:
    import imganalyzer.decode.places as places

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(places, "_GAZETTEER", None)
    assert place_of(51.5007, -0.1246).place == "London"
    assert len(list((tmp_path / "cache" / "imganalyzer").glob("places-*.npz"))) == 1
    monkeypatch.setattr(places, "_GAZETTEER", None)
    assert place_of(51.5007, -0.1246).place == "London"  # from the cache

    (tmp_path / "a-file").write_text("not a folder")  # no cache folder can be made below it
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file" / "sub"))
    monkeypatch.setattr(places, "_GAZETTEER", None)
    assert place_of(51.5007, -0.1246).place == "London"
