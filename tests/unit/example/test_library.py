"""The example library: varied real files (formats, modes, a rotated photo, DNGs with and
without a preview) that open, built quickly and the same every time."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
import rawpy
from PIL import ExifTags, Image, ImageOps

from imganalyzer.example.library import build_example_library


def _open_any(path: Path) -> tuple[int, int]:
    """Decode ``path`` fully; return its (width, height)."""
    if path.suffix.lower() == ".dng":
        with rawpy.imread(str(path)) as raw:
            height, width = raw.postprocess(half_size=True).shape[:2]
            return width * 2, height * 2
    if path.suffix.lower() == ".heic":
        return pillow_heif.open_heif(path).to_pillow().size
    with Image.open(path) as image:
        image.load()
        return image.size


@pytest.fixture(scope="module")
def example_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], float]:
    root = tmp_path_factory.mktemp("example")
    start = time.perf_counter()
    paths = build_example_library(root).paths
    return root, paths, time.perf_counter() - start


def test_example_library_is_varied_and_opens(example_library) -> None:
    root, paths, elapsed = example_library
    assert elapsed < 10
    assert 12 <= len(paths) <= 16
    assert all(p.is_file() and root in p.parents for p in paths)
    assert len({p.parent for p in paths}) >= 3
    suffixes = [p.suffix.lower() for p in paths]
    for suffix in (".jpg", ".png", ".tif", ".heic", ".dng"):
        assert suffix in suffixes
    sizes = {p.name: _open_any(p) for p in paths}
    assert sum(max(size) > 1024 for size in sizes.values()) >= 2
    with rawpy.imread(str(root / "2023/holiday/L1000123.DNG")) as raw:
        assert raw.extract_thumb().format == rawpy.ThumbFormat.JPEG
    with (
        rawpy.imread(str(root / "2024/home/R0001234.DNG")) as raw,
        pytest.raises(rawpy.LibRawNoThumbnailError),
    ):
        raw.extract_thumb()


def test_example_library_modes(example_library) -> None:
    root = example_library[0]
    with Image.open(root / "2024/home/astronaut_cutout.png") as image:
        assert image.mode == "RGBA"
        alpha = np.asarray(image)[..., 3]
        assert alpha.min() < 50 and alpha.max() == 255
    with Image.open(root / "2024/home/DSCF4410.JPG") as image:
        assert image.mode == "L"
    with Image.open(root / "scans/print_1987.png") as image:
        assert image.mode == "I;16"


def test_example_rotated_photo_displays_upright(example_library) -> None:
    root = example_library[0]
    with Image.open(root / "2023/holiday/IMG_2042.JPG") as image:
        assert image.getexif()[ExifTags.Base.Orientation] == 6
        assert image.width > image.height  # stored landscape
        upright = ImageOps.exif_transpose(image)
    assert upright.height > upright.width  # the rocket stands upright
    from skimage import data

    crop = Image.fromarray(data.rocket()[:, 170:470]).resize((600, 854), Image.Resampling.LANCZOS)
    difference = np.abs(np.asarray(upright, dtype=int) - np.asarray(crop, dtype=int))
    assert difference.mean() < 4


def test_example_library_is_deterministic(example_library, tmp_path: Path) -> None:
    root, paths, _ = example_library
    again = build_example_library(tmp_path).paths
    for first, second in zip(paths, again, strict=True):
        assert first.relative_to(root) == second.relative_to(tmp_path)
        assert first.read_bytes() == second.read_bytes(), first.name


def test_building_an_unchanged_library_again_touches_no_file(example_library, tmp_path) -> None:
    reference = example_library[0]
    first = build_example_library(tmp_path)
    assert first.written == first.paths

    def versions() -> dict[str, tuple[int, int, int]]:
        return {
            str(p.relative_to(tmp_path)): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_ino)
            for p in tmp_path.rglob("*")
        }

    before = versions()
    again = build_example_library(tmp_path)
    assert again.written == [] and again.paths == first.paths
    assert versions() == before  # no file rewritten, no scratch folder left behind
    changed, missing = first.paths[0], first.paths[1]
    changed.write_bytes(b"edited")
    missing.unlink()
    repaired = build_example_library(tmp_path)
    assert repaired.written == [changed, missing]
    for path in (changed, missing):
        assert path.read_bytes() == (reference / path.relative_to(tmp_path)).read_bytes()
    assert {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")} == set(before)
