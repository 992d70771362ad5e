"""The cloud module's model: ``CloudDescriber`` runs the remote model as a ``BatchedModel``
(requests in a thread pool, previous descriptions reused, checkpoints). See
``modules.cloud`` for the whole."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imganalyzer.catalog.manifests import Entry
from imganalyzer.decode.tiers import resize_long_edge
from imganalyzer.layout import Layout
from imganalyzer.modules.cloud import CloudSettings, api_key
from imganalyzer.modules.cloud_api import Client, Outcome, Sender, quiet_http_loggers
from imganalyzer.modules.cloud_budget import SKIPPED_BUDGET, Budget, RateLimiter
from imganalyzer.results import OK
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.batches import HostItems, RowBatch, RowFailure, TierBatches
from imganalyzer.runtime.jobshard import JobShard
from imganalyzer.runtime.registry import MODELS
from imganalyzer.store import ResultsStore

log = logging.getLogger(__name__)

CLOUD_VERSION = "1"
RUN_ID_ENV = "IMGANALYZER_RUN_ID"
# A shard's output is rewritten after this many new descriptions, so that a job killed
# mid-shard (SIGTERM, node lost) loses little that was paid for.
CHECKPOINT_EVERY = 25
NOT_SENT = "not described: the job stopped before sending this image"


@dataclass
class CloudStats:
    """What one job did: images described (``sent``), reused from the previous output
    (``cached``), left out by the budget, failed (API errors and undecodable images: the
    job's error rows), requests retried, and the estimated cost of what was sent."""

    sent: int = 0
    cached: int = 0
    skipped_budget: int = 0
    errors: int = 0
    retries: int = 0
    cost_usd: float = 0.0


class _TierImages(TierBatches):
    """The chosen tier's images of a shard's rows, each with its manifest entry."""

    def __init__(self, shard: JobShard, tier: str, rows: np.ndarray) -> None:
        super().__init__(shard.reader, tier, rows)
        self.entries = shard.entries

    def read(self, start: int, stop: int) -> RowBatch:
        batch = super().read(start, stop)
        items = np.empty(len(batch.indices), dtype=object)
        for k, (index, image, (height, width)) in enumerate(
            zip(batch.indices, batch.data, batch.image_sizes, strict=True)
        ):
            entry = self.entries[int(self.manifest_rows(index))]
            items[k] = (entry, np.ascontiguousarray(image[:height, :width]))
        return RowBatch(batch.indices, items, batch.sizes)


class CloudDescriber(BatchedModel):
    """A remote vision model as a batched model: ``predict_batch`` hands a batch's images
    to a pool of ``concurrency`` threads (budget, pacing, retries in ``Sender``) and returns
    at once; ``postprocess`` (the writer thread) waits for their outcomes, so requests keep
    flowing across batches. Rows already described for the same file version, provider and
    model are reused (``decide``); a stopped job keeps what it paid for (checkpoints)."""

    spec = MODELS["cloud"]
    on_torch = False
    not_done_reason = NOT_SENT

    def __init__(
        self,
        settings: CloudSettings,
        layout: Layout,
        ledger: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        """``ledger``: the run's budget file (``layout.cloud_ledger``), shared by the jobs of
        one run (``IMGANALYZER_RUN_ID``). ``clock``/``sleep``/``rng``: injectable for tests."""
        super().__init__(device="cpu", batch_size="auto")
        self.settings, self.layout, self.ledger = settings, layout, ledger
        self.clock, self.sleep, self.rng = clock, sleep, rng
        self.default_batch_size = settings.concurrency
        self.checkpoint_every = CHECKPOINT_EVERY
        self.counts = CloudStats()
        self._cached: dict[str, dict[int, dict[str, Any]]] = {}

    @classmethod
    def for_job(cls, settings: CloudSettings, layout: Layout, gated: bool) -> CloudDescriber:
        return cls(settings, layout, layout.cloud_ledger)

    @property
    def model_id(self) -> str:
        return self.settings.model_id

    @contextlib.contextmanager
    def job_context(self) -> Iterator[None]:
        """The HTTP clients' loggers kept quiet; what the job did logged when it is done."""
        with quiet_http_loggers():
            yield
        c, settings = self.counts, self.settings
        c.errors = self.stats.errors  # failed decodes, refused images, replies given up on
        log.info(
            "cloud: %s %s: %d sent, %d cached, %d skipped (budget), %d errors, %d retries, "
            "~$%.4f in %.1f s; run %s spent %s",
            settings.provider, settings.model_id, c.sent, c.cached, c.skipped_budget,
            c.errors, c.retries, c.cost_usd, self.stats.total_s,
            os.environ.get(RUN_ID_ENV) or "-", self.budget.spent(),
        )  # fmt: skip

    def use_threads(self, threads: int) -> int:
        return 1  # a loader thread reads the tiers; the requests run in the pool

    def load_model(self, device: Any, dtype: Any) -> None:
        secret = api_key(self.settings)
        run_id = os.environ.get(RUN_ID_ENV)
        self.budget = Budget(
            self.settings.max_images_per_run, self.settings.max_cost_usd, self.ledger, run_id
        )
        limiter = RateLimiter(self.settings.requests_per_minute, self.clock, self.sleep)
        client = Client(self.settings, secret)
        self.sender = Sender(
            client, self.settings, limiter, self.budget, self.sleep, self.rng, secret
        )
        self.pool = ThreadPoolExecutor(self.settings.concurrency, thread_name_prefix="cloud")
        self.started = time.perf_counter()

    def decide(self, shard: JobShard, row: int) -> dict[str, Any] | RowFailure | None:
        failed = super().decide(shard, row)
        if failed is not None:
            return failed
        if shard.id not in self._cached:
            store = ResultsStore(self.layout)
            has = store.has_rows(self.module, shard.id)
            previous = store.rows(self.module, shard.id) if has else []
            self._cached[shard.id] = _cached_rows(previous, shard.entries, self.settings)
        cached = self._cached[shard.id].get(row)
        if cached is None:
            return None
        self.counts.cached += 1
        return {k: v for k, v in cached.items() if k not in _IDENTITY}

    def source(self, shard: JobShard, rows: np.ndarray) -> TierBatches:
        tier = choose_tier(shard.reader.tiers, self.settings.max_long_edge)
        return _TierImages(shard, tier, rows)

    def preprocess(self, batch: RowBatch) -> HostItems:
        return HostItems(batch.data)

    def predict_batch(self, inputs: HostItems) -> list[tuple[Entry, Future]]:
        jpeg = self._jpeg
        return [
            (entry, self.pool.submit(self.sender.process, functools.partial(jpeg, rgb)))
            for entry, rgb in inputs
        ]

    def postprocess(self, outputs: list[tuple[Entry, Future]]) -> list[Any]:
        return [self._result(entry, future.result()) for entry, future in outputs]

    def row_fields(self, result: dict[str, Any], shard: JobShard, row: int) -> dict[str, Any]:
        return result

    def summary_fields(self) -> dict[str, Any]:
        """Provider, model, the name of the key's environment variable (never the key)."""
        return {
            "version": CLOUD_VERSION,
            "provider": self.settings.provider,
            "api_key_env": self.settings.key_env,
            **{k: v for k, v in dataclasses.asdict(self.counts).items() if k != "errors"},
        }

    def _jpeg(self, rgb: np.ndarray) -> bytes:
        rgb = resize_long_edge(rgb, self.settings.max_long_edge)
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, "JPEG", quality=self.settings.jpeg_quality)
        return buffer.getvalue()

    def _result(self, entry: Entry, outcome: Outcome) -> dict[str, Any] | RowFailure:
        counts, settings = self.counts, self.settings
        counts.retries += outcome.retries
        counts.cost_usd += outcome.cost_usd
        if outcome.skipped:
            counts.skipped_budget += 1
            return {"provider": settings.provider, "model": settings.model_id,
                    "skipped": SKIPPED_BUDGET}  # fmt: skip
        if outcome.fields is not None:
            counts.sent += 1
            return outcome.fields
        log.warning("cloud: %s: %s", entry.path, outcome.error)
        return RowFailure(outcome.error or "unknown error")


_IDENTITY = ("path", "size", "mtime_ns", "status")


def choose_tier(tiers: Mapping[str, int], max_long_edge: int) -> str:
    """The largest tier not above ``max_long_edge``; if all are larger, the smallest."""
    fitting = [name for name, side in tiers.items() if side <= max_long_edge]
    if fitting:
        return max(fitting, key=tiers.__getitem__)
    return min(tiers, key=tiers.__getitem__)


def _cached_rows(
    rows: list[dict[str, Any]], entries: list[Entry], settings: CloudSettings
) -> dict[int, dict[str, Any]]:
    """Row index -> previous ok row (of ``rows``) of the same file version, provider and
    model."""
    previous = {}
    for row in rows:
        reusable = row.get("status") == OK and "skipped" not in row and "description" in row
        same_model = (row.get("provider"), row.get("model")) == (
            settings.provider,
            settings.model_id,
        )
        if reusable and same_model:
            previous[(row["path"], row["size"], row["mtime_ns"])] = row
    return {
        index: previous[key]
        for index, entry in enumerate(entries)
        if (key := (entry.path, entry.size, entry.mtime_ns)) in previous
    }
