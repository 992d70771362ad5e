"""Technical image quality measured on a decoded sRGB array: sharpness, exposure, noise, colour.

Sharpness, exposure, clipping and noise work on luma: Rec. 709 weights on the gamma-encoded
sRGB values, 0..255. About 10 ms for a 1024 x 768 image on one core.
"""

from __future__ import annotations

import numpy as np

# The version of this output: TECHNICAL_VERSION in imganalyzer/versions.py.

SHARPNESS_LONG_EDGE = 512
HIGHLIGHT_LUMA = 250.0
SHADOW_LUMA = 5.0
DOMINANT_COLOURS = 5
KMEANS_SAMPLE = 4096
KMEANS_ITERATIONS = 20
_SEED = 0
_LUMA_WEIGHTS = np.array([0.2126, 0.7152, 0.0722], np.float32)
_RED_GREEN = np.array([1.0, -1.0, 0.0], np.float32)
_YELLOW_BLUE = np.array([0.5, 0.5, -1.0], np.float32)


def analyze_technical(rgb: np.ndarray) -> dict[str, object]:
    """Measure the technical quality of an ``(H, W, 3)`` uint8 sRGB image.

    Returns a JSON-ready dict of plain Python numbers:

    - ``sharpness``: variance of the 4-neighbour Laplacian of luma (0..255 scale), computed after
      an area downscale to a long edge of 512 px so that sizes compare. Smaller images are
      measured as they are (upscaling would blur them), so their scores run somewhat high.
    - ``exposure_mean``: mean luma, 0..1.
    - ``clipped_highlights`` / ``clipped_shadows``: fraction of pixels whose luma is >= 250 /
      <= 5 (out of 255). A saturated single channel under a darker luma does not count.
    - ``noise``: sigma of the noise in luma, in 8-bit levels (Immerkær 1996), at full
      resolution. Independent noise of sigma s in each channel shows as about 0.75 s.
    - ``dominant_colors``: up to 5 ``{"hex": "#rrggbb", "fraction": f}``, largest first, from a
      deterministic k-means on at most 4096 sampled pixels (fewer entries when the image has
      fewer distinct colours).
    - ``colorfulness``: Hasler & Süsstrunk (2003) M3, in 0..255 units.
    """
    _check_rgb(rgb)
    luma = _luma(rgb)
    return {
        "sharpness": round(_laplacian_variance(_area_downscale(luma, SHARPNESS_LONG_EDGE)), 2),
        "exposure_mean": round(float(luma.mean()) / 255.0, 4),
        "clipped_highlights": round(float(np.count_nonzero(luma >= HIGHLIGHT_LUMA)) / luma.size, 4),
        "clipped_shadows": round(float(np.count_nonzero(luma <= SHADOW_LUMA)) / luma.size, 4),
        "noise": round(_immerkaer_noise_sigma(luma), 3),
        "dominant_colors": _dominant_colors(rgb),
        "colorfulness": round(_colorfulness(rgb), 2),
    }


def _check_rgb(rgb: np.ndarray) -> None:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ValueError(f"expected a non-empty (H, W, 3) uint8 array, got {rgb.dtype} {rgb.shape}")


def _luma(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(H, W)`` float32 luma, 0..255."""
    return rgb @ _LUMA_WEIGHTS


def _area_downscale(image: np.ndarray, long_edge: int) -> np.ndarray:
    """Box-filter ``(H, W)`` float32 data down to a long edge of ``long_edge`` (never up).

    An integer block mean does most of the work (and all of it for the usual 1024 -> 512);
    any remaining fractional factor is resampled with exact fractional pixel areas.
    """
    factor = max(image.shape) // long_edge
    if factor >= 2:
        image = _block_mean(image, factor)
    height, width = image.shape
    scale = long_edge / max(height, width)
    if scale >= 1.0:
        return image
    out_height, out_width = max(1, round(height * scale)), max(1, round(width * scale))
    across = _area_resample_rows(image, out_width)
    return _area_resample_rows(np.ascontiguousarray(across.T), out_height).T


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks; up to ``factor - 1`` edge rows/columns drop."""
    height, width = (length // factor * factor for length in image.shape)
    total = np.zeros((height // factor, width // factor), np.float32)
    for row in range(factor):
        for column in range(factor):
            total += image[row:height:factor, column:width:factor]
    return total / np.float32(factor * factor)


def _area_resample_rows(image: np.ndarray, size: int) -> np.ndarray:
    """Average each row of ``(H, W)`` over ``size`` equal spans, from a cumulative sum."""
    length = image.shape[1]
    edges = np.linspace(0.0, length, size + 1)
    first = np.minimum(edges.astype(np.intp), length - 1)
    uncovered = (1.0 - (edges - first)).astype(np.float32)
    totals = np.cumsum(image, axis=1, dtype=np.float32)
    at_edges = totals[:, first] - uncovered * image[:, first]
    return np.diff(at_edges, axis=1) * np.float32(size / length)


def _laplacian_variance(luma: np.ndarray) -> float:
    if min(luma.shape) < 3:
        return 0.0
    centre = luma[1:-1, 1:-1]
    laplacian = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * centre
    return float(laplacian.var(dtype=np.float64))


def _immerkaer_noise_sigma(luma: np.ndarray) -> float:
    """Immerkær's estimate: mean |I * N| for the separable mask N = [1,-2,1]^T [1,-2,1]."""
    height, width = luma.shape
    if height < 3 or width < 3:
        return 0.0
    across = luma[:, :-2] - 2.0 * luma[:, 1:-1] + luma[:, 2:]
    response = across[:-2] - 2.0 * across[1:-1] + across[2:]
    total = float(np.abs(response).sum(dtype=np.float64))
    return float(np.sqrt(np.pi / 2.0) * total / (6.0 * (width - 2) * (height - 2)))


def _colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003): sigma_rgyb + 0.3 * mu_rgyb over the opponent channels."""
    red_green = rgb @ _RED_GREEN
    yellow_blue = rgb @ _YELLOW_BLUE
    spread = np.hypot(red_green.std(dtype=np.float64), yellow_blue.std(dtype=np.float64))
    centre = np.hypot(red_green.mean(dtype=np.float64), yellow_blue.mean(dtype=np.float64))
    return float(spread + 0.3 * centre)


def _dominant_colors(rgb: np.ndarray, count: int = DOMINANT_COLOURS) -> list[dict[str, object]]:
    """Up to ``count`` dominant colours of an ``(H, W, 3)`` uint8 image, largest share first.

    Deterministic: a fixed-seed sample of at most 4096 pixels, k-means++ seeding with a fixed
    seed, then Lloyd iterations. Each entry is ``{"hex": "#rrggbb", "fraction": f}``.
    """
    rng = np.random.default_rng(_SEED)
    pixels = rgb.reshape(-1, 3)
    if len(pixels) > KMEANS_SAMPLE:
        pixels = pixels[rng.choice(len(pixels), KMEANS_SAMPLE, replace=False)]
    samples = pixels.astype(np.float32)
    centres = _kmeans(samples, _kmeans_plus_plus(samples, count, rng))
    labels = _nearest_centre(samples, centres)
    shares = np.bincount(labels, minlength=len(centres)) / len(samples)
    colours = [
        (round(float(share), 3), _hex(centre))
        for centre, share in zip(centres, shares, strict=True)
        if share > 0
    ]
    colours.sort(key=lambda colour: (-colour[0], colour[1]))
    return [{"hex": hex_code, "fraction": fraction} for fraction, hex_code in colours]


def _kmeans_plus_plus(samples: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding; stops early once every sample coincides with a centre."""
    centres = [samples[rng.integers(len(samples))]]
    distances = ((samples - centres[0]) ** 2).sum(axis=1, dtype=np.float64)
    while len(centres) < count:
        total = distances.sum()
        if total <= 0.0:
            break
        centre = samples[rng.choice(len(samples), p=distances / total)]
        centres.append(centre)
        distances = np.minimum(distances, ((samples - centre) ** 2).sum(axis=1, dtype=np.float64))
    return np.array(centres)


def _nearest_centre(samples: np.ndarray, centres: np.ndarray) -> np.ndarray:
    # |s - c|^2 = |s|^2 - 2 s.c + |c|^2, and |s|^2 does not change which centre is nearest.
    return ((centres * centres).sum(axis=1) - 2.0 * (samples @ centres.T)).argmin(axis=1)


def _kmeans(samples: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Lloyd iterations from ``centres``; an emptied cluster keeps its previous centre."""
    for _ in range(KMEANS_ITERATIONS):
        labels = _nearest_centre(samples, centres)
        counts = np.bincount(labels, minlength=len(centres))
        sums = np.stack(
            [np.bincount(labels, samples[:, c], len(centres)) for c in range(3)], axis=1
        )
        updated = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
        if np.allclose(updated, centres, atol=0.5):
            return updated
        centres = updated
    return centres


def _hex(colour: np.ndarray) -> str:
    red, green, blue = (int(v) for v in np.clip(np.rint(colour), 0, 255))
    return f"#{red:02x}{green:02x}{blue:02x}"
