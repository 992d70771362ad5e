"""An image's values written the way photographers read them."""

from __future__ import annotations

from datetime import datetime

import pytest

from imganalyzer.search.browse import NO_OFFSET
from imganalyzer.web.facts import capture_time, exposure_line, size_line, technical_lines

R5 = {"exposure_time": 0.004, "f_number": 5.6, "focal_length": 50.0, "iso": 400}


def test_a_full_exposure_reads_shutter_aperture_focal_length_and_iso() -> None:
    assert exposure_line(R5) == "1/250 s · f/5.6 · 50 mm · ISO 400"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (1 / 8000, "1/8000 s"), (0.004, "1/250 s"), (1 / 60, "1/60 s"), (0.0125, "1/80 s"),
        (0.2, "1/5 s"), (0.25, "1/4 s"), (1 / 3, "0.3 s"), (0.3, "0.3 s"), (0.5, "0.5 s"),
        (1, "1 s"), (2.5, "2.5 s"), (30.0, "30 s"),
    ],
)  # fmt: skip
def test_shutter_speeds_below_a_quarter_second_are_fractions_and_longer_ones_seconds(
    seconds: float, shown: str
) -> None:
    assert exposure_line({"exposure_time": seconds}) == shown


def test_the_cameras_own_shutter_text_is_kept() -> None:
    assert exposure_line({"exposure_time": 0.5, "exposure_time_text": "1/2"}) == "1/2 s"


def test_apertures_and_focal_lengths_lose_needless_decimals() -> None:
    line = exposure_line({"f_number": 8.0, "focal_length": 23.0, "focal_length_35mm": 35})
    assert line == "f/8 · 23 mm (35 mm equiv.)"
    assert exposure_line({"f_number": 1.4, "focal_length": 4.25}) == "f/1.4 · 4.25 mm"


def test_a_35mm_equivalent_equal_to_the_focal_length_is_not_repeated() -> None:
    assert exposure_line({"focal_length": 50.0, "focal_length_35mm": 50}) == "50 mm"
    assert exposure_line({"focal_length": 50.0, "focal_length_35mm": 50.3}) == "50 mm"


def test_missing_zero_and_unusable_values_are_left_out() -> None:
    assert exposure_line({}) is None
    assert exposure_line({"iso": 400}) == "ISO 400"
    odd = {"exposure_time": 0, "f_number": float("nan"), "focal_length": "50", "iso": -100}
    assert exposure_line(odd) is None
    assert exposure_line({**R5, "f_number": None, "iso": float("inf")}) == "1/250 s · 50 mm"


def test_capture_time_is_the_cameras_clock_with_its_utc_offset() -> None:
    when = capture_time(datetime(2023, 7, 14, 18, 3, 22), -270, file_time=False)
    assert when["text"] == "Friday 14 July 2023, 18:03:22"
    assert when["zone"] == "UTC−04:30" and when["iso"] == "2023-07-14T18:03:22-04:30"
    assert when["source"] == "capture time (EXIF)"
    east = capture_time(datetime(2021, 6, 5, 18, 30), 120, file_time=False)
    assert east["zone"] == "UTC+02:00" and east["iso"] == "2021-06-05T18:30:00+02:00"
    assert capture_time(datetime(2021, 1, 1), 0, file_time=False)["zone"] == "UTC+00:00"


def test_a_capture_time_without_offset_names_no_zone() -> None:
    when = capture_time(datetime(2022, 1, 10, 8, 0), NO_OFFSET, file_time=False)
    assert when["zone"] == "" and when["iso"] == "2022-01-10T08:00:00"
    assert when["text"] == "Monday 10 January 2022, 08:00:00"


def test_a_file_time_says_that_the_metadata_had_no_capture_date() -> None:
    when = capture_time(datetime(2020, 9, 13, 12, 26, 40), 60, file_time=True)
    assert "modification time" in when["source"] and "no capture date" in when["source"]
    assert when["zone"] == "UTC+01:00"


def test_technical_values_are_labelled_in_a_fixed_order_and_nan_is_dropped() -> None:
    technical = {
        "colorfulness": 41.6, "sharpness": 120.4, "exposure_mean": 0.456,
        "clipped_highlights": 0.0123, "noise": float("nan"), "width": 600,
    }  # fmt: skip
    assert technical_lines(technical) == [
        ("sharpness", "120"), ("mean brightness", "46%"), ("clipped highlights", "1.2%"),
        ("colourfulness", "42"),
    ]  # fmt: skip
    assert technical_lines({}) == []


def test_size_reads_pixels_megapixels_and_bytes() -> None:
    assert size_line(6000, 4000, 12_345_678) == "6000 × 4000 (24.0 MP) · 12.3 MB"
    assert size_line(None, 4000, 500) == "500 B"
    assert size_line(0, 0, 0) is None and size_line("6000", 4000, None) is None
