"""Tests for imganalyzer.decode.technical: quality measures on a decoded (H, W, 3) uint8 array."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage import data

from imganalyzer.decode.technical import analyze_technical
from imganalyzer.versions import TECHNICAL_VERSION


def flat(value: int | tuple[int, int, int], height: int = 96, width: int = 128) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def with_noise(rgb: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0.0, sigma, rgb.shape)
    return np.clip(rgb + noise, 0, 255).round().astype(np.uint8)


def resized(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def assert_plain_json(value: object) -> None:
    """Only dict/list/str/int/float (no numpy scalars), and nothing json cannot write."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert type(value) in (str, int, float), type(value)


def test_version_is_a_string():
    assert isinstance(TECHNICAL_VERSION, str)


def test_result_is_plain_json_with_all_measures():
    result = analyze_technical(data.astronaut())

    assert set(result) == {
        "sharpness",
        "exposure_mean",
        "clipped_highlights",
        "clipped_shadows",
        "noise",
        "dominant_colors",
        "colorfulness",
    }
    assert_plain_json(result)
    json.dumps(result, allow_nan=False)


def test_results_are_deterministic():
    photo = data.coffee()

    assert analyze_technical(photo) == analyze_technical(photo.copy())


def test_blurred_copy_is_less_sharp():
    photo = data.astronaut()
    blurred = ndimage.gaussian_filter(photo, sigma=(2.0, 2.0, 0.0))

    sharp_score = analyze_technical(photo)["sharpness"]
    blurred_score = analyze_technical(blurred)["sharpness"]

    assert blurred_score < 0.3 * sharp_score


def test_sharpness_is_comparable_across_image_sizes():
    photo = resized(data.astronaut(), (1024, 1024))
    half = resized(photo, (512, 512))

    large_score = analyze_technical(photo)["sharpness"]
    small_score = analyze_technical(half)["sharpness"]

    assert large_score == pytest.approx(small_score, rel=0.05)


def test_sharpness_handles_non_integer_downscale_factors():
    photo = resized(data.astronaut(), (900, 700))
    blurred = ndimage.gaussian_filter(photo, sigma=(2.0, 2.0, 0.0))

    assert analyze_technical(blurred)["sharpness"] < analyze_technical(photo)["sharpness"]


def test_flat_image_has_zero_sharpness_and_noise():
    result = analyze_technical(flat(128))

    assert result["sharpness"] == 0.0
    assert result["noise"] == 0.0


def test_black_image_is_all_clipped_shadows():
    result = analyze_technical(flat(0))

    assert result["clipped_shadows"] == 1.0
    assert result["clipped_highlights"] == 0.0
    assert result["exposure_mean"] == 0.0


def test_white_image_is_all_clipped_highlights():
    result = analyze_technical(flat(255))

    assert result["clipped_highlights"] == 1.0
    assert result["clipped_shadows"] == 0.0
    assert result["exposure_mean"] == 1.0


def test_mid_grey_exposure_is_about_half():
    assert analyze_technical(flat(128))["exposure_mean"] == pytest.approx(0.5, abs=0.01)


def test_noise_estimate_recovers_the_sigma_of_added_grey_noise():
    noise = np.random.default_rng(0).normal(0.0, 5.0, (256, 256, 1))
    noisy = np.clip(128 + noise, 0, 255).round().astype(np.uint8).repeat(3, axis=2)

    assert analyze_technical(noisy)["noise"] == pytest.approx(5.0, rel=0.1)


def test_noise_is_measured_on_luma_so_independent_channel_noise_averages_down():
    noisy = with_noise(flat(128, 256, 256), sigma=5.0)
    luma_sigma = 5.0 * float(np.hypot(np.hypot(0.2126, 0.7152), 0.0722))

    assert analyze_technical(noisy)["noise"] == pytest.approx(luma_sigma, rel=0.1)


def test_noisy_photo_has_more_noise_than_clean_photo():
    photo = data.chelsea()

    clean = analyze_technical(photo)["noise"]
    noisy = analyze_technical(with_noise(photo, sigma=8.0))["noise"]

    assert noisy > clean + 3.0


def test_two_colour_image_gives_both_colours_with_their_fractions():
    rgb = flat((255, 0, 0), 100, 100)
    rgb[:, 70:] = (0, 0, 255)

    colours = analyze_technical(rgb)["dominant_colors"]

    assert [colour["hex"] for colour in colours] == ["#ff0000", "#0000ff"]
    assert colours[0]["fraction"] == pytest.approx(0.7, abs=0.03)
    assert colours[1]["fraction"] == pytest.approx(0.3, abs=0.03)


def test_single_colour_image_gives_one_dominant_colour():
    colours = analyze_technical(flat((12, 34, 56)))["dominant_colors"]

    assert colours == [{"hex": "#0c2238", "fraction": 1.0}]


def test_photo_gives_five_dominant_colours_sorted_by_fraction():
    colours = analyze_technical(data.coffee())["dominant_colors"]

    fractions = [colour["fraction"] for colour in colours]
    assert len(colours) == 5
    assert fractions == sorted(fractions, reverse=True)
    assert sum(fractions) == pytest.approx(1.0, abs=0.01)
    assert all(len(colour["hex"]) == 7 and colour["hex"].startswith("#") for colour in colours)


def test_greyscale_image_has_no_colorfulness():
    grey = np.repeat(data.camera()[:, :, None], 3, axis=2)

    assert analyze_technical(grey)["colorfulness"] == pytest.approx(0.0, abs=0.01)


def test_saturated_image_is_more_colourful_than_a_photo():
    saturated = flat((255, 0, 0), 64, 64)
    saturated[:, 32:] = (0, 255, 0)

    vivid = analyze_technical(saturated)["colorfulness"]
    photo = analyze_technical(data.coffee())["colorfulness"]

    assert vivid > 200.0
    assert 0.0 < photo < vivid


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 5, 3), (3, 3, 3)])
def test_tiny_images_do_not_fail(shape):
    result = analyze_technical(np.full(shape, 90, np.uint8))

    json.dumps(result, allow_nan=False)
    assert result["dominant_colors"] == [{"hex": "#5a5a5a", "fraction": 1.0}]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32)],
    ids=["greyscale", "rgba", "float"],
)
def test_input_that_is_not_uint8_rgb_is_rejected(bad):
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        analyze_technical(bad)
