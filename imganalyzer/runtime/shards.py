"""One shard of a model job as the job skeleton read and checked it: what a model's hooks
(``BatchedModel.decide``, ``source``, ``row_fields``, ``shard_array``) are given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from imganalyzer.catalog.manifests import Entry
from imganalyzer.decode.tiers import TierReader


@dataclass
class JobShard:
    """One shard of a model job as read and checked: ``entries`` in manifest order;
    ``rows[module]`` the rows of each module the model reads (same order; "technical" may
    be absent: then a failed decode shows only in the tier store); ``arrays[module]`` their
    arrays; ``tiers`` the tier store (None for a model without a tier)."""

    id: str
    entries: list[Entry]
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    tiers: TierReader | None = None

    @property
    def reader(self) -> TierReader:
        """The tier store, for a model that reads tiers."""
        if self.tiers is None:
            raise ValueError(f"shard {self.id}: its model reads no tiers")
        return self.tiers
