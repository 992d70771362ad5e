"""The batched runtime: device and precision choice, overlap of loading with predicting,
out-of-memory back-off, error propagation, decode failures."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from imganalyzer.catalog.manifests import Entry
from imganalyzer.results import error_row, ok_row, write_rows
from imganalyzer.runtime.batched import (
    CPU_AUTO_BATCH_SIZE,
    NOT_DECODED,
    BatchedModel,
    choose_device,
    choose_dtype,
    decode_failures,
    initial_batch_size,
)
from imganalyzer.runtime.batches import ArrayBatches, RowBatch, RowFailure

FEATURES = 8


class LinearModel(BatchedModel):
    """A real (tiny) torch model with knobs that slow its stages or make it run out of memory."""

    module = "test"
    tier = None
    default_batch_size = 4

    def __init__(self, batch_size=4, preprocess_s=0.0, predict_s=0.0, oom_above=None, **kw):
        super().__init__(device="cpu", batch_size=batch_size)
        self.preprocess_s, self.predict_s, self.oom_above = preprocess_s, predict_s, oom_above
        self.fail_preprocess = kw.get("fail_preprocess", False)
        self.predicted_sizes: list[int] = []

    @property
    def model_id(self) -> str:
        return "linear"

    def load_model(self, device: torch.device, dtype: torch.dtype) -> None:
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(FEATURES, 3).to(device, dtype)

    def preprocess(self, batch: RowBatch) -> torch.Tensor:
        if self.fail_preprocess:
            raise OSError("unreadable chunk")
        time.sleep(self.preprocess_s)
        return torch.from_numpy(batch.data.astype(np.float32))

    def predict_batch(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.oom_above is not None and len(inputs) > self.oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.predicted_sizes.append(len(inputs))
        time.sleep(self.predict_s)
        return self.linear(inputs)

    def postprocess(self, outputs: torch.Tensor) -> np.ndarray:
        return outputs.cpu().numpy()


def rows(n: int = 24) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, FEATURES))


def run_collect(model: BatchedModel, data: np.ndarray, usable=None, **kw) -> np.ndarray:
    results = np.full((len(data), 3), np.nan, dtype=np.float32)

    def deliver(indices: np.ndarray, values: np.ndarray) -> None:
        results[indices] = values

    usable = np.ones(len(data), dtype=bool) if usable is None else usable
    model.run(ArrayBatches(data, usable), deliver, **kw)
    return results


def test_auto_device_is_cpu_without_accelerators() -> None:
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("an accelerator is present")
    assert choose_device("auto").type == "cpu"
    assert choose_device("cpu").type == "cpu"


def test_asking_for_a_missing_device_names_the_config_key() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    with pytest.raises(RuntimeError, match="config key 'device' is 'cuda'"):
        choose_device("cuda")


def test_half_precision_only_on_accelerators_for_models_declared_safe(monkeypatch) -> None:
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert choose_dtype(cuda, half_precision_safe=True) == torch.bfloat16
    assert choose_dtype(cuda, half_precision_safe=False) == torch.float32
    assert choose_dtype(torch.device("cpu"), half_precision_safe=True) == torch.float32
    assert choose_dtype(torch.device("mps"), half_precision_safe=True) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert choose_dtype(cuda, half_precision_safe=True) == torch.float16


def test_auto_batch_size_is_the_default_capped_on_cpu() -> None:
    assert initial_batch_size("auto", 256, torch.device("cuda")) == 256
    assert initial_batch_size("auto", 256, torch.device("cpu")) == CPU_AUTO_BATCH_SIZE
    assert initial_batch_size(7, 256, torch.device("cpu")) == 7


def test_batched_results_equal_one_at_a_time_and_skip_unusable_rows() -> None:
    data = rows(11)
    usable = np.ones(11, dtype=bool)
    usable[[0, 5, 10]] = False
    batched = run_collect(LinearModel(batch_size=4), data, usable)
    single = run_collect(LinearModel(batch_size=1), data, usable)
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-6)
    assert np.isnan(batched[~usable]).all() and not np.isnan(batched[usable]).any()


def test_model_never_waits_for_the_loader_when_loading_is_faster() -> None:
    model = LinearModel(batch_size=4, predict_s=0.05)
    run_collect(model, rows(32))  # 8 batches
    stats = model.stats
    assert stats.batches == 8 and stats.images == 32
    assert stats.predict_s >= 8 * 0.05
    assert stats.wait_s < 0.1 * stats.predict_s  # batches after the first were always ready


def test_slow_loading_overlaps_predicting_total_is_the_max_not_the_sum() -> None:
    batches, stage_s = 6, 0.06
    overlapped = LinearModel(batch_size=4, preprocess_s=stage_s, predict_s=stage_s)
    started = time.perf_counter()
    run_collect(overlapped, rows(4 * batches))
    overlapped_s = time.perf_counter() - started
    serial = LinearModel(batch_size=4, preprocess_s=stage_s, predict_s=stage_s)
    started = time.perf_counter()
    run_collect(serial, rows(4 * batches), prefetch=0)
    serial_s = time.perf_counter() - started
    # Overlapped: one preprocess, then 6 predicts ~ 7 stages; serial: 12 stages.
    assert overlapped_s < 0.8 * serial_s
    assert overlapped_s < (batches + 2.5) * stage_s
    assert serial.stats.wait_s > 0.8 * (batches - 1) * stage_s  # the naive path waits


def test_slow_writer_does_not_stall_predict() -> None:
    model = LinearModel(batch_size=4)
    model.run(ArrayBatches(rows(24), np.ones(24, bool)), lambda i, v: time.sleep(0.05))
    assert model.stats.predict_s < 0.05  # the model itself never waited for writes
    assert model.stats.total_s >= 6 * 0.05  # yet every write finished before run returned


def test_out_of_memory_halves_the_batch_and_retries_it(caplog) -> None:
    data = rows(19)
    expected = run_collect(LinearModel(batch_size=1), data)
    model = LinearModel(batch_size="auto", oom_above=2)  # auto starts at 4 here
    results = run_collect(model, data)
    np.testing.assert_allclose(results, expected, rtol=1e-5, atol=1e-6)
    assert model.stats.oom_backoffs == 1 and model.stats.batch_size == 2
    assert max(model.predicted_sizes) == 2 and sum(model.predicted_sizes) == 19
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_fixed_batch_size_that_runs_out_of_memory_backs_off_with_a_warning(caplog) -> None:
    model = LinearModel(batch_size=8, oom_above=1)
    with caplog.at_level(logging.WARNING):
        results = run_collect(model, rows(10))
    assert not np.isnan(results).any() and model.stats.batch_size == 1
    assert "lower test.batch_size in config.yaml" in caplog.text


def test_out_of_memory_on_a_single_image_fails() -> None:
    with pytest.raises(torch.OutOfMemoryError):
        run_collect(LinearModel(batch_size=4, oom_above=0), rows(4))


def test_a_loader_error_fails_the_run_instead_of_hanging() -> None:
    with pytest.raises(OSError, match="unreadable chunk"):
        run_collect(LinearModel(fail_preprocess=True), rows(12))


def test_decode_failures_come_from_the_technical_rows(tmp_path: Path) -> None:
    entries = [Entry(f"{i}.jpg", 1, 1) for i in range(3)]
    technical = tmp_path / "technical.jsonl"
    write_rows(technical, [ok_row(entries[0], {}), error_row(entries[1], "truncated file")])
    with pytest.raises(ValueError, match="2 rows, expected 3"):
        decode_failures(technical, 3)
    write_rows(
        technical,
        [
            ok_row(entries[0], {}),
            error_row(entries[1], "truncated", "truncated"),
            error_row(entries[2], "an old row without a kind"),
        ],
    )
    assert decode_failures(technical, 3) == {
        1: RowFailure("truncated", "truncated"),
        2: RowFailure("an old row without a kind"),
    }
    assert decode_failures(None, 3) == {}
    assert NOT_DECODED == "not decoded"


def test_a_model_run_logs_progress_up_to_every_row(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGANALYZER_PROGRESS_S", "0")
    usable = np.ones(24, dtype=bool)
    usable[-3:] = False  # rows that did not decode still count as done
    with caplog.at_level(logging.INFO, logger="imganalyzer.progress"):
        run_collect(LinearModel(batch_size=4), rows(24), usable)
    lines = [r.getMessage() for r in caplog.records if r.name == "imganalyzer.progress"]
    assert lines[0].startswith("test: 4/24 images") and "left" in lines[0]
    assert lines[-1].startswith("test: 24/24 images") and "done in" in lines[-1]
