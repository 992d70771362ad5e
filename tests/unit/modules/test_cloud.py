"""The cloud module against a fake vision API on 127.0.0.1, through the real SDK clients."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.config import validate_config
from imganalyzer.decode.tiers import TierReader, resize_long_edge
from imganalyzer.errors import ConfigError
from imganalyzer.layout import Layout
from imganalyzer.modules import cloud_job
from imganalyzer.modules.cloud import CloudError, CloudSettings
from imganalyzer.modules.cloud_api import MalformedReply, parse_reply
from imganalyzer.modules.cloud_budget import RateLimiter, budget_skipped
from imganalyzer.modules.cloud_job import RUN_ID_ENV, CloudDescriber, CloudStats, choose_tier
from imganalyzer.results import read_rows
from imganalyzer.runtime import job as job_module
from imganalyzer.runtime.weights import REMOTE_MODELS
from imganalyzer.store import ResultsStore
from tests.support.fake_vision_api import (
    USAGE,
    FakeVisionApi,
    description_of,
    malformed,
    ok,
    reply_fields,
    slow,
    status,
)
from tests.unit.conftest import DECODE_FAILURE, Shard, shard_images, write_shard

KEY = "sk-test-9f8e7d6c5b4a-do-not-leak"
FAILED_ROW = 2  # conftest's shard: row 2 failed to decode
N_DECODED = len(shard_images()) - 1
JOB = "000001-00000-00000"


class FakeClock:
    """A monotonic clock that only ``sleep`` advances; records every sleep."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds

    def waits(self, at_least: float = 1e-3) -> list[float]:
        """Sleeps longer than the pacing of a very high requests-per-minute."""
        return [s for s in self.sleeps if s >= at_least]


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv(RUN_ID_ENV, raising=False)


@pytest.fixture
def api() -> Iterator[FakeVisionApi]:
    with FakeVisionApi() as server:
        yield server


def settings_for(api: FakeVisionApi, provider: str = "anthropic", **overrides) -> CloudSettings:
    fast = {
        "requests_per_minute": 1e6,
        "backoff_base_s": 0.001,
        "backoff_max_s": 0.01,
        "timeout_s": 5.0,
        "concurrency": 1,
        "max_retries": 3,
    }
    section = {"provider": provider, "base_url": api.base_url(provider), **fast, **overrides}
    config = validate_config({"library": "x", "cloud": section}, check_paths=False)
    return CloudSettings.from_config(config)  # the way the workflow builds them


@pytest.fixture
def shard(tmp_path_factory: pytest.TempPathFactory) -> Shard:
    """A fresh shard per test: a job reuses the rows an earlier job wrote."""
    return write_shard(tmp_path_factory.mktemp("cloud_results"), shard_images())


def describe(shard: Shard, settings: CloudSettings, ledger: Path | None = None, **kw) -> CloudStats:
    """The cloud job of ``shard`` alone; what it did."""
    describer = CloudDescriber(settings, shard.layout, ledger, **kw)
    return job_module.run_model_job(describer, shard.layout, JOB, [shard.id]).counts


def out_of(shard: Shard) -> Path:
    return shard.layout.rows("cloud", shard.id)


def tier_size(shard: Shard, tier: str, index: int) -> tuple[int, int]:
    """(width, height) of image ``index`` in ``tier`` of the stored tier store."""
    height, width = TierReader(shard.tiers).image(tier, index).shape[:2]
    return width, height


def all_written_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_each_provider_describes_every_decoded_image_through_its_sdk(
    api: FakeVisionApi, shard: Shard, tmp_path: Path, provider: str
) -> None:
    out = out_of(shard)
    stats = describe(shard, settings_for(api, provider, concurrency=2))
    rows = list(read_rows(out))
    assert [row["path"] for row in rows] == [entry.path for entry in shard.entries]
    assert rows[FAILED_ROW] == {**rows[FAILED_ROW], "status": "error", "error": DECODE_FAILURE}
    for index, row in enumerate(rows):
        if index == FAILED_ROW:
            continue
        # The tier store's largest tier fits 1568 px: each row describes that tier image.
        assert row["status"] == "ok" and row["provider"] == provider
        assert row["model"] == REMOTE_MODELS[provider]
        expected = reply_fields(tier_size(shard, "detect", index))
        assert {k: row[k] for k in expected} == expected
        assert row["usage"] == USAGE
    assert (stats.sent, stats.cached, stats.errors, stats.skipped_budget) == (N_DECODED, 0, 1, 0)
    path = "/v1/messages" if provider == "anthropic" else "/v1/chat/completions"
    assert len(api.requests) == N_DECODED and {r.path for r in api.requests} == {path}
    for request in api.requests:
        assert request.image_format == "JPEG" and max(request.image_size) <= 1568
        assert request.body["model"] == REMOTE_MODELS[provider]
        assert KEY in request.headers.get("x-api-key", "") + request.headers.get("authorization")
    if provider == "openai":
        assert all(r.body["response_format"] == {"type": "json_object"} for r in api.requests)


def test_the_largest_tier_that_fits_is_sent_and_downscaled_when_none_fits(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    tiers = {"detect": 160, "clip": 96}
    assert choose_tier(tiers, 1568) == "detect" and choose_tier(tiers, 120) == "clip"
    assert choose_tier(tiers, 64) == "clip"  # none fits: the smallest, downscaled
    out = out_of(shard)
    describe(shard, settings_for(api, max_long_edge=64))
    reader = TierReader(shard.tiers)
    for index, row in enumerate(read_rows(out)):
        if index != FAILED_ROW:
            height, width = resize_long_edge(reader.image("clip", index), 64).shape[:2]
            assert max(height, width) == 64
            assert row["description"] == description_of((width, height))


def test_retry_after_is_honoured_and_pauses_sending(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    clock = FakeClock()
    api.script(status(429, retry_after=7), status(429, retry_after="0.5"))
    settings = settings_for(api, backoff_base_s=0.1, backoff_max_s=10)
    stats = describe(shard, settings, clock=clock, sleep=clock.sleep, rng=lambda: 1.0)
    # Each wait is the longer of Retry-After and the backoff (0.1 s, then 0.2 s).
    assert clock.waits() == pytest.approx([7.0, 0.5], abs=1e-3)
    assert stats.retries == 2 and stats.sent == N_DECODED and stats.errors == 1
    assert [r.action for r in api.requests[:3]] == ["status", "status", "ok"]


def test_server_errors_and_timeouts_are_retried_with_exponential_backoff(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    clock = FakeClock()
    api.script(status(500), status(529), slow(1.0))
    out = out_of(shard)
    settings = settings_for(api, timeout_s=0.25, backoff_base_s=0.01, backoff_max_s=1.0)
    stats = describe(shard, settings, clock=clock, sleep=clock.sleep, rng=lambda: 1.0)
    assert clock.waits() == pytest.approx([0.01, 0.02, 0.04])
    assert stats.retries == 3 and stats.sent == N_DECODED
    assert all(row["status"] == "ok" for i, row in enumerate(read_rows(out)) if i != FAILED_ROW)


def test_jitter_keeps_each_backoff_between_half_and_all_of_its_step(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    clock = FakeClock()
    api.script(status(503), status(503))
    settings = settings_for(api, backoff_base_s=0.01, backoff_max_s=1.0)
    describe(shard, settings, clock=clock, sleep=clock.sleep,
        rng=lambda: 0.0,
    )  # fmt: skip
    assert clock.waits(at_least=1e-4) == pytest.approx([0.005, 0.01])


def test_exhausted_retries_give_an_error_row_and_the_shard_goes_on(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    api.script(status(500), status(500), status(500))
    out = out_of(shard)
    stats = describe(shard, settings_for(api, max_retries=2))
    rows = list(read_rows(out))
    assert rows[0]["status"] == "error" and "gave up after 2 retries: HTTP 500" in rows[0]["error"]
    assert all(row["status"] == "ok" for row in rows[1:] if row is not rows[FAILED_ROW])
    assert (stats.sent, stats.errors, stats.retries) == (N_DECODED - 1, 2, 2)
    assert len(api.requests) == 3 + N_DECODED - 1


def test_a_refused_image_is_an_error_row_and_not_retried(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    api.script(status(400))
    out = out_of(shard)
    stats = describe(shard, settings_for(api))
    rows = list(read_rows(out))
    assert rows[0]["status"] == "error" and "HTTP 400" in rows[0]["error"]
    assert stats.retries == 0 and len(api.requests) == N_DECODED


def test_a_malformed_reply_is_retried_once_then_an_error_row(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    api.script(malformed(), malformed(), malformed())
    out = out_of(shard)
    stats = describe(shard, settings_for(api))
    rows = list(read_rows(out))
    assert rows[0]["status"] == "error" and rows[0]["error"].startswith("malformed reply")
    assert rows[1]["status"] == "ok"  # malformed once, then described
    assert rows[1]["description"] == description_of(tier_size(shard, "detect", 1))
    assert len(api.requests) == N_DECODED + 2 and stats.retries == 2


def test_parse_reply_accepts_fenced_json_and_rejects_the_rest() -> None:
    fields = reply_fields((3, 4))
    assert parse_reply("```json\n" + json.dumps(fields) + "\n```") == fields
    assert parse_reply(json.dumps({**fields, "text_seen": None}))["text_seen"] == ""
    for bad in ["no json", "[1, 2]", '{"keywords": []}', '{"description": "x", "objects": 3}']:
        with pytest.raises(MalformedReply):
            parse_reply(bad)


def test_the_image_budget_skips_the_rest_and_a_later_run_sends_only_those(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    out = out_of(shard)
    stats = describe(shard, settings_for(api, max_images_per_run=3))
    rows = list(read_rows(out))
    skipped = [i for i, row in enumerate(rows) if row.get("skipped") == "budget"]
    assert (stats.sent, stats.skipped_budget) == (3, N_DECODED - 3) and len(skipped) == 3
    assert all(rows[i]["status"] == "ok" and "description" not in rows[i] for i in skipped)
    assert budget_skipped([out, tmp_path / "missing.jsonl"]) == N_DECODED - 3

    api.requests.clear()
    again = describe(shard, settings_for(api))
    assert (again.sent, again.cached, again.skipped_budget) == (N_DECODED - 3, 3, 0)
    sent_sizes = sorted(r.image_size for r in api.requests)
    assert sent_sizes == sorted(tier_size(shard, "detect", i) for i in skipped)
    assert budget_skipped([out]) == 0


def test_the_cost_budget_counts_token_usage_at_the_configured_prices(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    prices = {"input_usd_per_mtok": 10.0, "output_usd_per_mtok": 50.0}
    per_image = (USAGE["input_tokens"] * 10.0 + USAGE["output_tokens"] * 50.0) / 1e6
    # The 0.001 estimate is reserved before a request and replaced by the real cost after:
    # two images spend 2 * per_image; a third still fits its estimate; a fourth does not.
    budget = 2 * per_image + 0.002
    settings = settings_for(api, cost_per_image_usd=0.001, max_cost_usd=budget, **prices)
    stats = describe(shard, settings)
    assert (stats.sent, stats.skipped_budget) == (3, N_DECODED - 3)
    assert stats.cost_usd == pytest.approx(3 * per_image)


def test_the_cost_budget_with_a_flat_cost_per_image(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    settings = settings_for(api, cost_per_image_usd=0.01, max_cost_usd=0.025)
    stats = describe(shard, settings)
    assert (stats.sent, stats.skipped_budget) == (2, N_DECODED - 2)
    assert stats.cost_usd == pytest.approx(0.02)


def test_jobs_of_one_run_share_the_budget_through_the_ledger(
    api: FakeVisionApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Layout(tmp_path / "results").cloud_ledger
    settings = settings_for(api, max_images_per_run=N_DECODED + 2)

    def job(index: int, run: str) -> tuple[int, int]:
        shard = write_shard(tmp_path / f"{run}-{index}", shard_images())  # nothing to reuse
        stats = describe(shard, settings, ledger)
        return stats.sent, stats.skipped_budget

    monkeypatch.setenv(RUN_ID_ENV, "run-1")
    assert job(0, "r1") == (N_DECODED, 0)
    assert job(1, "r1") == (2, N_DECODED - 2)
    runs = json.loads(ledger.read_text())["runs"]
    assert runs["run-1"]["images"] == N_DECODED + 2
    assert runs["run-1"]["cost_usd"] == pytest.approx((N_DECODED + 2) * 0.005)
    monkeypatch.setenv(RUN_ID_ENV, "run-2")  # a new run has a new budget
    assert job(1, "r2") == (N_DECODED, 0)
    monkeypatch.delenv(RUN_ID_ENV)  # no run id: each job's own counts
    assert job(0, "r3") == job(1, "r3") == (N_DECODED, 0)
    assert set(json.loads(ledger.read_text())["runs"]) == {"run-1", "run-2"}


def test_a_second_run_sends_nothing_and_a_changed_file_is_sent_again(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    out = out_of(shard)
    describe(shard, settings_for(api))
    first = list(read_rows(out))
    api.requests.clear()
    stats = describe(shard, settings_for(api))
    assert (stats.sent, stats.cached) == (0, N_DECODED) and not api.requests
    assert list(read_rows(out)) == first

    changed = [Entry(e.path, e.size, e.mtime_ns + (i == 4)) for i, e in enumerate(shard.entries)]
    write_manifest(shard.manifest, changed)
    stats = describe(shard, settings_for(api))
    assert (stats.sent, stats.cached) == (1, N_DECODED - 1)
    assert api.requests[0].image_size == tier_size(shard, "detect", 4)
    stats = describe(shard, settings_for(api, model="another-model"))
    assert stats.sent == N_DECODED  # another model's rows are not reused


def test_no_more_requests_in_flight_than_the_concurrency(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    api.response_delay_s = 0.15
    stats = describe(shard, settings_for(api, concurrency=3))
    assert stats.sent == N_DECODED and api.max_in_flight == 3


def test_the_rate_limiter_spaces_request_starts() -> None:
    clock = FakeClock()
    limiter = RateLimiter(requests_per_minute=30, clock=clock, sleep=clock.sleep)
    starts = []
    for _ in range(4):
        limiter.acquire()
        starts.append(clock())
    assert starts == pytest.approx([0.0, 2.0, 4.0, 6.0])
    limiter.hold_off(10.0)
    limiter.acquire()
    assert clock() == pytest.approx(16.0)


def test_a_job_keeps_to_its_requests_per_minute(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    clock = FakeClock()
    settings = settings_for(api, requests_per_minute=120)
    describe(shard, settings, clock=clock, sleep=clock.sleep)
    assert clock() == pytest.approx((N_DECODED - 1) * 0.5)  # first request at once


def test_the_api_key_is_never_logged_or_written(
    api: FakeVisionApi, shard: Shard, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sdk_loggers = [logging.getLogger(name) for name in ("anthropic", "httpx2", "httpcore2")]
    for logger in sdk_loggers:
        logger.setLevel(logging.DEBUG)  # as ANTHROPIC_LOG=debug would
    caplog.set_level(logging.DEBUG)
    api.script(status(500), status(400), malformed(), malformed())
    summary, ledger = shard.layout.job_summary("cloud", JOB), shard.layout.cloud_ledger
    settings = settings_for(api, max_retries=0, max_images_per_run=N_DECODED - 1)
    stats = describe(shard, settings, ledger)
    assert stats.errors == 4 and stats.skipped_budget == 1
    assert any(KEY in r.headers.get("authorization", "") for r in api.requests)  # it was used
    assert not [r for r in caplog.records if r.name.split(".")[0] in ("anthropic", "httpx2")]
    assert KEY not in caplog.text and "cloud:" in caplog.text
    assert KEY not in all_written_text(shard.layout.root)
    assert json.loads(summary.read_text())["api_key_env"] == "ANTHROPIC_API_KEY"
    assert all(logger.level == logging.DEBUG for logger in sdk_loggers)  # restored
    for logger in sdk_loggers:
        logger.setLevel(logging.NOTSET)


def test_a_stopped_job_keeps_what_it_described_and_a_rerun_sends_the_rest(
    api: FakeVisionApi, shard: Shard, tmp_path: Path
) -> None:
    api.script(ok(), ok(), ok(), status(401))
    out = out_of(shard)
    with pytest.raises(CloudError):
        describe(shard, settings_for(api))
    rows = list(read_rows(out))
    assert [row["status"] for row in rows] == ["ok", "ok", "error", "ok"] + ["error"] * 3
    assert all(row["error"] == cloud_job.NOT_SENT for row in rows[4:])
    api.requests.clear()
    stats = describe(shard, settings_for(api))
    assert (stats.sent, stats.cached) == (3, 3) and len(api.requests) == 3


def test_the_output_is_checkpointed_while_a_shard_runs(
    api: FakeVisionApi, shard: Shard, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = []
    monkeypatch.setattr(cloud_job, "CHECKPOINT_EVERY", 2)
    monkeypatch.setattr(
        ResultsStore, "write_rows", lambda _store, _module, _shard, rows: writes.append(list(rows))
    )
    describe(shard, settings_for(api))
    described = [sum("description" in row for row in rows) for rows in writes]
    assert described == [2, 4, 6, 6]  # three checkpoints, then the final write


@pytest.mark.parametrize("code", [401, 404])
def test_a_refused_key_or_unknown_model_stops_the_job_without_the_key(
    api: FakeVisionApi, shard: Shard, tmp_path: Path, code: int
) -> None:
    api.script(*[status(code)] * 10)
    out = out_of(shard)
    with pytest.raises(CloudError) as raised:
        describe(shard, settings_for(api, concurrency=2))
    message = str(raised.value)
    assert KEY not in message and f"HTTP {code}" in message
    assert ("ANTHROPIC_API_KEY" if code == 401 else "cloud.model") in message
    assert not out.exists() and len(api.requests) <= 2


@pytest.mark.parametrize(
    ("provider", "key_env", "expected"),
    [("anthropic", None, "ANTHROPIC_API_KEY"), ("openai", None, "OPENAI_API_KEY"),
     ("openai", "MY_VISION_KEY", "MY_VISION_KEY")],
)  # fmt: skip
def test_a_missing_key_names_its_variable_before_anything_is_written(
    api: FakeVisionApi,
    shard: Shard,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    key_env: str | None,
    expected: str,
) -> None:
    monkeypatch.delenv(expected, raising=False)
    out = out_of(shard)
    settings = settings_for(api, provider, api_key_env=key_env)
    with pytest.raises(ConfigError, match=expected):
        describe(shard, settings, tmp_path / "ledger.json")
    assert not any(tmp_path.iterdir()) and not api.requests and not out.exists()
    assert not shard.layout.job_summary("cloud", JOB).exists()


def test_settings_from_the_validated_section_use_the_provider_defaults() -> None:
    # bad values are rejected by the schema: tests/unit/test_config.py
    config = {"library": "x", "cloud": {"provider": "openai", "model": None}}
    settings = CloudSettings.from_config(validate_config(config, check_paths=False))
    assert settings.model_id == REMOTE_MODELS["openai"] and settings.key_env == "OPENAI_API_KEY"
    assert settings.prompt.startswith("Describe this photo for a searchable photo catalogue.")


def test_an_image_missing_from_the_tier_store_is_an_error_row(
    api: FakeVisionApi, tmp_path: Path
) -> None:
    # No technical rows: the tier store's ok flag is the only sign of the failed decode.
    shard = write_shard(tmp_path / "s", shard_images())
    shard.technical.unlink()
    out = out_of(shard)
    stats = describe(shard, settings_for(api))
    rows = list(read_rows(out))
    assert rows[FAILED_ROW]["status"] == "error" and rows[FAILED_ROW]["error"] == "not decoded"
    assert stats.errors == 1 and stats.sent == N_DECODED
    assert np.array([r["status"] == "ok" for r in rows]).sum() == N_DECODED
