"""Groups of duplicates and the keeper each group chooses."""

from __future__ import annotations

import pytest

import imganalyzer.steps.duplicates_groups as duplicates_groups
from imganalyzer.layout import Layout
from imganalyzer.steps.duplicates import find_duplicates
from tests.support.duplicates_library import (
    RAW,
    RAW_EXPORT,
    SETTINGS,
    Analysed,
    analysed_library,
    pixels,
)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Analysed:
    return analysed_library(tmp_path_factory.mktemp("dups"))


def test_keeper_prefers_raw_over_a_larger_jpeg(analysed: Analysed) -> None:
    report = find_duplicates(Layout(analysed.results), analysed.library, SETTINGS, use_clip=False)
    group = next(g for g in report.groups if RAW in {m.path for m in g.members})
    members = {m.path: m for m in group.members}
    assert pixels(members[RAW_EXPORT]) > pixels(members[RAW])
    assert group.keeper == RAW and members[RAW].raw and not members[RAW_EXPORT].raw
    assert group.reason.startswith("RAW (dng) over jpeg")


def test_keeper_order_of_rules() -> None:
    def member(path: str, **fields) -> duplicates_groups.Member:
        values = {"size": 100, "width": 10, "height": 10, "sharpness": 1.0, "format": "jpeg"}
        values.update(fields)
        return duplicates_groups.Member(path, raw=values["format"] == "dng", **values)

    cases = [
        ([member("b"), member("a", width=11)], "a", "most pixels"),
        ([member("b"), member("a", sharpness=2.0)], "a", "sharpest"),
        ([member("a"), member("b", size=101)], "b", "largest file"),
        ([member("b"), member("a")], "a", "identical"),
        ([member("a", width=99), member("b", format="dng")], "b", "RAW"),
    ]
    for members, keeper, reason in cases:
        chosen, why = duplicates_groups.choose_keeper(members)
        assert chosen.path == keeper and why.startswith(reason)
