"""The model-job skeleton: a job's shards read and checked once, run through one model load
as one stream, their rows (decided, predicted, failed) and the job summary written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from imganalyzer.catalog.manifests import Entry, write_manifest
from imganalyzer.decode.tiers import TierReader
from imganalyzer.layout import Layout
from imganalyzer.results import error_row, ok_row, read_rows, write_rows
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.batches import RowBatch, RowFailure, TierBatches
from imganalyzer.runtime.job import run_model_job
from imganalyzer.runtime.jobshard import JobShard
from tests.unit.conftest import DECODE_FAILURE, Shard, shard_images, write_shard

JOB = "000001-00000-00000"
FAILED_ROW = 2  # conftest's shard: row 2 failed to decode


class MeanColour(BatchedModel):
    """A real (tiny) model over the clip tier: each image's mean colour. ``skip``: rows it
    settles without reading (a gate); ``crash_after``: batches before it fails."""

    module = "colour"
    tier = "clip"
    default_batch_size = 2

    def __init__(self, skip: frozenset[int] = frozenset(), batch_size: int = 2, crash_after=None):
        super().__init__(device="cpu", batch_size=batch_size)
        self.skip, self.crash_after = skip, crash_after
        self.loads, self.seen = 0, []

    @property
    def model_id(self) -> str:
        return "mean-colour"

    def load_model(self, device: torch.device, dtype: torch.dtype) -> None:
        self.loads += 1

    def decide(self, shard: JobShard, row: int) -> dict[str, Any] | RowFailure | None:
        if row in self.skip:
            return {"skipped": "gate"}
        return super().decide(shard, row)

    def preprocess(self, batch: RowBatch) -> torch.Tensor:
        self.seen += batch.indices.tolist()  # positions in the job's stream
        means = [
            image[:h, :w].reshape(-1, 3).mean(axis=0)
            for image, (h, w) in zip(batch.data, batch.sizes, strict=True)
        ]
        return torch.from_numpy(np.stack(means).astype(np.float32))

    def predict_batch(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.crash_after is not None and self.stats.batches > self.crash_after:
            raise RuntimeError("the device fell over")
        return inputs

    def postprocess(self, outputs: torch.Tensor) -> list[Any]:
        return [row for row in outputs.numpy()]

    def row_fields(self, result: np.ndarray, shard: JobShard, row: int) -> dict[str, Any]:
        return {"mean": [round(float(v), 3) for v in result]}


class FailingRows(MeanColour):
    def postprocess(self, outputs: torch.Tensor) -> list[Any]:
        return [RowFailure("too blue") for _ in outputs]


class DecidesNothing(MeanColour):
    def decide(self, shard: JobShard, row: int) -> None:
        return None


def rows_of(shard: Shard, module: str = "colour") -> list[dict]:
    return list(read_rows(shard.layout.rows(module, shard.id)))


def test_rows_follow_the_manifest_with_decode_failures_and_a_summary(tmp_path: Path) -> None:
    shard = write_shard(tmp_path, shard_images())
    model = run_model_job(MeanColour(), shard.layout, JOB, [shard.id])
    rows = rows_of(shard)
    assert [row["path"] for row in rows] == [entry.path for entry in shard.entries]
    assert rows[FAILED_ROW] == error_row(shard.entries[FAILED_ROW], DECODE_FAILURE)
    reader = TierReader(shard.tiers)
    for index, row in enumerate(rows):
        if index != FAILED_ROW:
            expected = reader.image("clip", index).reshape(-1, 3).mean(axis=0)
            assert row["status"] == "ok" and row["mean"] == pytest.approx(expected, abs=1e-3)
    assert len(model.seen) == len(rows) - 1  # a failed decode is never read
    summary = json.loads(shard.layout.job_summary("colour", JOB).read_text())
    assert summary["shards"] == [shard.id] and summary["model"] == "mean-colour"
    assert summary["errors"] == 1 and summary["images"] == len(rows) - 1


def test_one_load_runs_several_shards_as_one_stream_with_the_same_rows(tmp_path: Path) -> None:
    images = shard_images()
    ids = ["000001-00000", "000002-00000", "000003-00000"]
    shards = [write_shard(tmp_path / "job", images[i * 2 :], shard) for i, shard in enumerate(ids)]
    model = MeanColour(batch_size=3)
    run_model_job(model, shards[0].layout, JOB, ids)
    assert model.loads == 1
    for i, shard in enumerate(shards):
        alone = write_shard(tmp_path / f"alone{i}", images[i * 2 :])
        run_model_job(MeanColour(batch_size=1), alone.layout, JOB, [alone.id])
        assert rows_of(shard) == rows_of(alone)


def test_gated_rows_are_never_read_and_failed_results_are_error_rows(tmp_path: Path) -> None:
    shard = write_shard(tmp_path, shard_images())
    model = MeanColour(skip=frozenset({0, 4}))
    run_model_job(model, shard.layout, JOB, [shard.id])
    rows = rows_of(shard)
    assert len(model.seen) == 4  # rows 1, 3, 5, 6
    assert rows[0] == ok_row(shard.entries[0], {"skipped": "gate"})
    assert rows[4]["skipped"] == "gate" and "mean" in rows[5]
    run_model_job(FailingRows(), shard.layout, JOB, [shard.id])
    rows = rows_of(shard)
    assert [row["error"] for row in rows] == ["too blue"] * 2 + [DECODE_FAILURE] + ["too blue"] * 4


def test_a_failed_decode_passes_its_error_kind_on(tmp_path: Path) -> None:
    shard = write_shard(tmp_path, shard_images())
    technical = list(read_rows(shard.technical))
    technical[FAILED_ROW] = error_row(shard.entries[FAILED_ROW], "truncated JPEG", "truncated")
    write_rows(shard.technical, technical)
    run_model_job(MeanColour(), shard.layout, JOB, [shard.id])  # decided from the decode row
    assert rows_of(shard)[FAILED_ROW] == technical[FAILED_ROW]
    run_model_job(DecidesNothing(), shard.layout, JOB, [shard.id])  # found missing in the tiers
    assert rows_of(shard)[FAILED_ROW] == technical[FAILED_ROW]


def test_without_technical_rows_the_tier_store_tells_the_failed_decode(tmp_path: Path) -> None:
    shard = write_shard(tmp_path, shard_images())
    shard.technical.unlink()
    run_model_job(MeanColour(), shard.layout, JOB, [shard.id])
    assert rows_of(shard)[FAILED_ROW]["error"] == "not decoded"


def test_inputs_that_disagree_with_the_manifest_stop_the_job_before_it_loads(
    tmp_path: Path,
) -> None:
    shard = write_shard(tmp_path, shard_images())
    rows = list(read_rows(shard.technical))
    write_manifest(shard.manifest, shard.entries[:-1])
    with pytest.raises(ValueError, match="7 rows, expected 6"):
        run_model_job(MeanColour(), shard.layout, JOB, [shard.id])
    shard.technical.unlink()
    with pytest.raises(ValueError, match="zarr: 7 images, manifest has 6"):
        run_model_job(MeanColour(), shard.layout, JOB, [shard.id])
    write_manifest(shard.manifest, shard.entries)
    write_rows(shard.technical, rows[:-1])
    with pytest.raises(ValueError, match="6 rows, expected 7"):
        run_model_job(MeanColour(), shard.layout, JOB, [shard.id])
    write_rows(shard.technical, rows)

    class Gated(MeanColour):
        inputs = ("technical", "gate")

    others = [Entry(e.path + ".other", e.size, e.mtime_ns) for e in shard.entries]
    write_rows(shard.layout.rows("gate", shard.id), [ok_row(e, {}) for e in others])
    model = Gated()
    with pytest.raises(ValueError, match="is not"):
        run_model_job(model, shard.layout, JOB, [shard.id])
    assert model.loads == 0 and not shard.layout.rows("colour", shard.id).exists()


def test_a_checkpointing_model_keeps_the_rows_done_when_the_job_stops(tmp_path: Path) -> None:
    class Paid(MeanColour):
        checkpoint_every = 1
        not_done_reason = "not sent"

    shard = write_shard(tmp_path, shard_images())
    with pytest.raises(RuntimeError, match="fell over"):
        run_model_job(Paid(batch_size=2, crash_after=1), shard.layout, JOB, [shard.id])
    rows = rows_of(shard)
    assert ["mean" in row for row in rows[:2]] == [True, True]
    assert rows[FAILED_ROW]["error"] == DECODE_FAILURE
    assert {row["error"] for row in rows[3:]} == {"not sent"}
    assert not shard.layout.job_summary("colour", JOB).exists()


def test_tier_batches_of_chosen_rows_read_them_close_or_far_apart(tmp_path: Path) -> None:
    shard = write_shard(tmp_path, shard_images())
    reader = TierReader(shard.tiers)
    images, sizes, _ = reader.read("clip", 0, reader.n_images)
    for rows in ([0, 1, 3], [0, 6], [5], [1, 2, 4]):  # row 2: not decoded, left out
        batch = TierBatches(reader, "clip", np.array(rows)).read(0, len(rows))
        kept = [k for k, row in enumerate(rows) if row != FAILED_ROW]
        assert batch.indices.tolist() == kept
        assert np.array_equal(batch.data, images[[rows[k] for k in kept]])
        assert np.array_equal(batch.sizes, sizes[[rows[k] for k in kept]])


def test_the_layout_decides_where_a_job_writes(tmp_path: Path) -> None:
    shard = write_shard(tmp_path, shard_images())
    run_model_job(MeanColour(), Layout(tmp_path), JOB, [shard.id])
    assert (tmp_path / "colour" / f"{shard.id}.jsonl").exists()
    assert (tmp_path / "colour" / "jobs" / f"{JOB}.json").exists()


HOST_JOB = """
import sys
from pathlib import Path
from imganalyzer.runtime.batched import BatchedModel
from imganalyzer.runtime.batches import HostItems
from imganalyzer.runtime.job import run_model_job
from tests.unit.conftest import shard_images, write_shard

class Sizes(BatchedModel):
    module, tier, default_batch_size, on_torch = "sizes", "clip", 2, False
    model_id = "sizes"
    def load_model(self, device, dtype): pass
    def preprocess(self, batch): return HostItems(batch.sizes.tolist())
    def predict_batch(self, inputs): return list(inputs)
    def postprocess(self, outputs): return outputs
    def row_fields(self, result, shard, row): return {"size": result}

shard = write_shard(Path(sys.argv[1]), shard_images())
run_model_job(Sizes(), shard.layout, "000001-00000-00000", [shard.id])
print("torch" in sys.modules)
"""


def test_a_host_model_job_never_imports_torch(tmp_path: Path) -> None:
    # onnxruntime and API models (faces, OCR, cloud): importing torch would cost their
    # job seconds and ~0.5 GB of memory for nothing.
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", HOST_JOB, str(tmp_path)],
        capture_output=True, text=True, cwd=root, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
    rows = list(read_rows(Layout(tmp_path).rows("sizes", "000001-00000")))
    assert rows[0]["size"] == [64, 96] and rows[FAILED_ROW]["status"] == "error"
