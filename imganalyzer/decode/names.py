"""The names people read for a camera and a place, made from the metadata fields.

Cameras write the maker into the model as often as not ("Canon" + "Canon EOS R5", "NIKON
CORPORATION" + "NIKON Z 6_2") and a town is often its own region ("Lisbon", "Lisbon",
"Portugal"): joined as they are, the words repeat. These functions are the one source of the
display names: the metadata rows, the search index (``imganalyzer search --json``,
``/api/search``, the web pages) and the export's ``images`` table all show what they return.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# A maker's company words ("NIKON CORPORATION", "OLYMPUS OPTICAL CO.,LTD", "CASIO COMPUTER
# CO.,LTD"): the brand is what comes before them.
_CORPORATE_WORDS = re.compile(
    r"[\s,]+(corporation|corp\.?|co\.?,?\s*ltd\.?|company|inc\.?|ltd\.?|imaging|optical|"
    r"camera|computer|digital|electric|photo|film)\b.*$",
    re.IGNORECASE,
)


def camera_name(make: str | None, model: str | None) -> str | None:
    """The camera as people name it: the brand once, then the model.

    "Canon" + "Canon EOS R5" -> "Canon EOS R5"; "NIKON CORPORATION" + "NIKON Z 6_2" ->
    "NIKON Z 6_2"; "EASTMAN KODAK COMPANY" + "KODAK DX6490" -> "KODAK DX6490"; "FUJIFILM" +
    "X-T4" -> "FUJIFILM X-T4"; "Apple" + "iPhone 13" -> "Apple iPhone 13"; None when both are
    missing.
    """
    make, model = (make or "").strip(), (model or "").strip()
    brand = _CORPORATE_WORDS.sub("", make).strip(" ,.")
    if not model:
        return brand or None
    if not brand:
        return model
    model_first_word = model.split()[0].casefold()
    brand_words = {word.casefold() for word in brand.split()}
    if model_first_word in brand_words or model.casefold().startswith(brand.casefold()):
        return model
    return f"{brand} {model}"


def place_name(place: str | None, region: str | None, country: str | None) -> str | None:
    """Town, region and country, each once: "Lisbon", "Lisbon", "Portugal" -> "Lisbon,
    Portugal"; "Paris", "Île-de-France", "France" -> "Paris, Île-de-France, France"; None when
    all are missing."""
    return ", ".join(part for part in place_parts(place, region, country) if part) or None


def place_parts(
    place: str | None, region: str | None, country: str | None
) -> tuple[str | None, str | None, str | None]:
    """Town, region and country with a repeated name left out (None): "Lisbon", "Lisbon",
    "Portugal" -> ("Lisbon", None, "Portugal"), for pages that show each part on its own."""
    seen: set[str] = set()
    parts: list[str | None] = []
    for part in (place, region, country):
        part = (part or "").strip()
        parts.append(part if part and part.casefold() not in seen else None)
        seen.add(part.casefold())
    return parts[0], parts[1], parts[2]


def display_names(metadata: Mapping[str, object]) -> dict[str, str | None]:
    """``{"camera": ..., "place": ...}`` for a metadata row (its ``make``, ``model``,
    ``place``, ``region`` and ``country``)."""

    def text(key: str) -> str | None:
        value = metadata.get(key)
        return value if isinstance(value, str) else None

    return {
        "camera": camera_name(text("make"), text("model")),
        "place": place_name(text("place"), text("region"), text("country")),
    }
