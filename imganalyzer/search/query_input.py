"""What a search may be asked: every option parsed and range-checked before Tantivy sees it.

Each check raises :class:`SearchInputError` (a ``ValueError``) with a one-line message that
names the option and its bound. Tantivy's query parser recurses once per bracket and
overflows the stack (a segfault) near 5,000 levels, a result count of 0 panics inside it and
a huge one makes it allocate that many slots up front: the bounds below keep it far away.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime

LIMIT_MAX = 10_000
QUERY_CHARS_MAX = 1_000  # a typed query is rarely a tenth of this
QUERY_NESTING_MAX = 32  # brackets ( [ { inside one another
WORDS_CHARS_MAX = 200  # --camera, --lens, --person, --folder
KM_MAX = 20_038.0  # half the Earth's circumference: every place is nearer than this
AESTHETIC_RANGE = (0.0, 10.0)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class SearchInputError(ValueError):
    """An option out of range or a query Tantivy must not see: a one-line message."""


@dataclass(frozen=True)
class Bound:
    low: float
    high: float


def check_limit(limit: object, option: str = "--limit", high: int = LIMIT_MAX) -> int:
    """A count asked for (results by default): an integer from 1 to ``high``."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise SearchInputError(f"{option} wants a whole number, got {limit!r}")
    if not 1 <= limit <= high:
        raise SearchInputError(f"{option} must be between 1 and {high:,}, got {limit:,}")
    return limit


def parse_limit(text: str, option: str = "--limit", high: int = LIMIT_MAX) -> int:
    try:
        value = int(text.strip()) if len(text) <= 30 else None
    except ValueError:
        value = None
    if value is None:
        raise SearchInputError(f"{option} wants a whole number, got {text[:30]!r}")
    return check_limit(value, option, high)


def check_query(text: object) -> str:
    """The query text, checked for length and bracket nesting, with characters Tantivy
    cannot take (a lone surrogate from a non-UTF-8 argument, control characters) spaced."""
    if not isinstance(text, str):
        raise SearchInputError(f"the query must be text, got {type(text).__name__}")
    if len(text) > QUERY_CHARS_MAX:
        raise SearchInputError(
            f"the query is {len(text):,} characters long; at most {QUERY_CHARS_MAX:,} are allowed"
        )
    depth = nesting_depth(text)
    if depth > QUERY_NESTING_MAX:
        raise SearchInputError(
            f"the query nests brackets {depth} deep; at most {QUERY_NESTING_MAX} are allowed"
        )
    return _plain_text(text)


def nesting_depth(text: str) -> int:
    """The deepest nesting of ( [ { outside quoted phrases (unbalanced ones count too)."""
    depth = deepest = 0
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}" and depth:
            depth -= 1
    return deepest


def check_words(text: object, option: str, plain: bool = True) -> str | None:
    """The words of a text filter (``--camera`` ...): bounded, plain text (``plain``: a
    folder keeps its characters, its facet takes any path); None if blank."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise SearchInputError(f"{option} must be text, got {type(text).__name__}")
    if len(text) > WORDS_CHARS_MAX:
        raise SearchInputError(f"{option} is {len(text):,} characters; at most {WORDS_CHARS_MAX}")
    if not text.strip():
        return None
    return _plain_text(text) if plain else text


def _plain_text(text: str) -> str:
    text = _CONTROL.sub(" ", text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def parse_date_bound(text: str, option: str = "date") -> datetime:
    """``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or an ISO time -> the start of that period."""
    return check_date(_parse_date(text.strip()[:40], option), option)


def _parse_date(text: str, option: str) -> datetime:
    for pattern in ("%Y", "%Y-%m"):
        try:
            return datetime.strptime(text, pattern)
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except (ValueError, OverflowError):
        raise SearchInputError(
            f"{option} wants YYYY, YYYY-MM, YYYY-MM-DD or an ISO time, got {text!r}"
        ) from None


def check_date(value: object, option: str = "date") -> datetime:
    if not isinstance(value, datetime):
        raise SearchInputError(f"{option} must be a date, got {value!r}")
    if not 1800 <= value.year <= 2200:
        raise SearchInputError(f"{option} must lie between the years 1800 and 2200, got {value}")
    return value.replace(tzinfo=None)


def check_dates(after: datetime | None, before: datetime | None) -> None:
    if after is not None and before is not None and after >= before:
        raise SearchInputError(f"--after ({after:%Y-%m-%d}) must come before --before")


def parse_near(text: str) -> tuple[float, float, float]:
    """``LAT,LON,KM`` -> (latitude, longitude, km), each within its range."""
    parts = text.split(",")
    if len(parts) != 3:
        raise SearchInputError(f"--near wants LAT,LON,KM, got {text!r}")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise SearchInputError(f"--near wants three numbers LAT,LON,KM, got {text!r}") from None
    return check_near(values)


def check_near(near: object) -> tuple[float, float, float]:
    if not isinstance(near, tuple | list) or len(near) != 3:
        raise SearchInputError(f"--near wants (latitude, longitude, km), got {near!r}")
    latitude, longitude, km = (_number(v, "--near") for v in near)
    if not -90 <= latitude <= 90:
        raise SearchInputError(f"--near: latitude must be between -90 and 90, got {latitude}")
    if not -180 <= longitude <= 180:
        raise SearchInputError(f"--near: longitude must be between -180 and 180, got {longitude}")
    if not 0 < km <= KM_MAX:
        raise SearchInputError(f"--near: distance must be above 0 and at most {KM_MAX:,} km")
    return latitude, longitude, km


def check_minimum(value: object, option: str, bound: Bound) -> float:
    number = _number(value, option)
    if bound.low <= number <= bound.high:
        return number
    if math.isinf(bound.high):
        raise SearchInputError(f"{option} must be at least {bound.low:g}, got {number:g}")
    raise SearchInputError(
        f"{option} must be between {bound.low:g} and {bound.high:g}, got {number:g}"
    )


def parse_minimum(text: str, option: str, bound: Bound) -> float:
    try:
        value = float(text)
    except ValueError:
        raise SearchInputError(f"{option} wants a number, got {text!r}") from None
    return check_minimum(value, option, bound)


def _number(value: object, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SearchInputError(f"{option} wants a number, got {value!r}")
    if not math.isfinite(value):
        raise SearchInputError(f"{option} wants a finite number, got {value!r}")
    return float(value)


AESTHETIC = Bound(*AESTHETIC_RANGE)
SHARPNESS = Bound(0.0, math.inf)  # variance of the Laplacian (0..255 scale): from 0 up
