"""Batched, overlapped model inference over one shard: the base of every model module.

A module subclasses ``BatchedModel`` and implements the transformers split:

- ``load_model(device, dtype)``: build the model once per job (``load()`` calls it lazily);
- ``preprocess(batch)``: CPU work on one batch of rows, run in the loader thread(s);
- ``predict_batch(inputs)``: the hot path, on the device, nothing else;
- ``postprocess(outputs)``: device outputs -> plain per-row results, run in the writer thread.

``run`` reads batches from a source (runtime.batches: ``TierBatches`` for a tier store,
``ArrayBatches`` for stored vectors) in background threads that keep the next batches
preprocessed (and pinned, on CUDA) while the current one runs (OPP-3, OPP-4); hands
each result batch to a writer thread so writing never blocks the device; halves the
batch and retries it on out-of-memory; and records how long the model waited for the
loader versus how long it spent predicting (``stats``). The loop never calls
``torch.cuda.synchronize`` or ``empty_cache``: only the writer's copy to the host waits.

A module also declares what its job reads and how a result becomes a row (``inputs``,
``decide``, ``source``, ``row_fields``, ``shard_array``): ``runtime.job.run_model_job`` reads
the shards, checks them, runs the model over them as one stream and writes the rows.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from imganalyzer.layout import Layout
from imganalyzer.progress import Progress
from imganalyzer.results import read_rows
from imganalyzer.runtime.batches import (
    BatchSource,
    RowBatch,
    RowFailure,
    TierBatches,
)
from imganalyzer.runtime.registry import ModelSpec
from imganalyzer.store import check_row_count

if TYPE_CHECKING:  # torch is imported where it runs: a host model's job never loads it
    import torch

    from imganalyzer.runtime.batches import ModelInputs
    from imganalyzer.runtime.jobshard import JobShard

log = logging.getLogger(__name__)

# Batches kept loaded ahead of the model: one ready while the next is being prepared.
PREFETCH_BATCHES = 2
# Result batches the writer may lag behind before the model waits: bounds the device
# memory held by outputs not yet copied to the host.
WRITER_BACKLOG = 2
# On CPU a batch larger than this gains nothing (measured in bench/bench_embedding.py) and
# running out of host memory kills the process instead of raising: "auto" caps it here.
CPU_AUTO_BATCH_SIZE = 16
NOT_DECODED = "not decoded"


@dataclass(frozen=True)
class HostDevice:
    """Where a host model's inputs stay (``BatchedModel.on_torch`` False): no torch device."""

    type: str = "cpu"


HOST = HostDevice()
_OUT_OF_MEMORY = object()  # _try_predict's answer when the batch did not fit

Deliver = Callable[[np.ndarray, Any], None]


def choose_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; ``cuda``/``mps``/``cpu`` (the schema's
    choices) force one."""
    import torch

    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if requested == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if (requested == "cuda" and not cuda) or (requested == "mps" and not mps):
        raise RuntimeError(f"config key 'device' is {requested!r}, but no such device is here")
    return torch.device(requested)


def choose_dtype(device: torch.device, half_precision_safe: bool) -> torch.dtype:
    """bf16 on CUDA where supported, else fp16, for models safe in half precision; fp32 else."""
    import torch

    if not half_precision_safe or device.type == "cpu":
        return torch.float32
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def initial_batch_size(requested: int | str, default: int, device: torch.device) -> int:
    """A fixed ``requested`` size (bounded by the schema), or for ``auto`` the model's
    default (capped on CPU)."""
    if requested == "auto":
        return min(default, CPU_AUTO_BATCH_SIZE) if device.type == "cpu" else default
    return int(requested)


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    # MPS and older CUDA paths raise a plain RuntimeError with this text.
    return isinstance(error, torch.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error)
    )


@dataclass
class RunStats:
    """Timings of one ``run`` (seconds, host clock) and of the model load."""

    images: int = 0
    batches: int = 0
    load_s: float = 0.0
    first_wait_s: float = 0.0  # waiting for the first batch: nothing to overlap with yet
    wait_s: float = 0.0  # waiting for the loader after the first batch: ~0 if it keeps up
    predict_s: float = 0.0  # in predict_batch (on CUDA: launch time plus back-pressure)
    total_s: float = 0.0
    oom_backoffs: int = 0
    batch_size: int = 0  # in use at the end, after any back-off
    errors: int = 0  # error rows a model job wrote (runtime.job)


class BatchedModel(ABC):
    """Base of the model modules; see the module docstring for the contract."""

    spec: ClassVar[ModelSpec | None] = None  # its registry entry: sets the five below
    module: ClassVar[str]  # for logs: "embedding"
    tier: ClassVar[str | None]  # the tier it reads (None: reads no pixels)
    default_batch_size: int  # a class's, from its spec; a host model may set its own
    half_precision_safe: ClassVar[bool] = False  # may it run in bf16/fp16 on a GPU?
    # False: a model outside torch (onnxruntime, an API); its inputs stay on the host and it
    # chooses its own runtime from ``requested_device``.
    on_torch: ClassVar[bool] = True
    # What its job reads besides the manifests: rows of these modules for the same shards
    # ("technical": the decode job's), and arrays (aesthetic: the embedding vectors).
    inputs: tuple[str, ...] = ("technical",)
    input_arrays: tuple[str, ...] = ()
    # For results that cost money (cloud): the job rewrites the rows done so far every this
    # many results and when it stops; rows not reached get ``not_done_reason``. 0: never.
    checkpoint_every: int = 0
    not_done_reason: str = "not done"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.spec is not None:
            cls.module, cls.tier = cls.spec.module, cls.spec.tier
            cls.default_batch_size = cls.spec.default_batch_size
            cls.inputs, cls.input_arrays = cls.spec.inputs, cls.spec.input_arrays

    @classmethod
    def for_job(cls, settings: Any, layout: Layout, gated: bool) -> BatchedModel:
        """A workflow job's model from its ``config.Settings``; ``gated``: reads the gate's rows."""
        model = cls(settings)  # a module's own __init__ takes its settings
        if gated and cls.spec and cls.spec.gate:
            model.inputs = (*cls.spec.inputs, cls.spec.gate)
        return model

    def job_context(self) -> contextlib.AbstractContextManager:
        """Held around a whole job (``runtime.job.run_model_job``)."""
        return contextlib.nullcontext()

    def __init__(self, device: str = "auto", batch_size: int | str = "auto") -> None:
        self.requested_device, self.requested_batch_size = device, batch_size
        self.device: Any = HOST  # a torch.device for a torch model; HOST for a host model
        self.dtype: Any = None  # a torch.dtype for a torch model
        if self.on_torch:
            import torch

            self.device, self.dtype = torch.device("cpu"), torch.float32  # until loaded
        self.batch_size = 0
        self.stats = RunStats()
        self._loaded = False

    @property
    @abstractmethod
    def model_id(self) -> str:
        """The model as configured, for logs and result rows: ``ViT-L-14:openai``."""

    @abstractmethod
    def load_model(self, device: torch.device, dtype: torch.dtype) -> None:
        """Build the model on ``device`` in ``dtype``; called once, by ``load``."""

    @abstractmethod
    def preprocess(self, batch: RowBatch) -> ModelInputs:
        """CPU tensor of the batch's model inputs, first dimension = rows (loader thread)."""

    @abstractmethod
    def predict_batch(self, inputs: Any) -> Any:
        """The forward pass on ``inputs`` (already on the device, in ``dtype`` if float)."""

    @abstractmethod
    def postprocess(self, outputs: Any) -> Any:
        """Device outputs -> per-row host results, first dimension = rows (writer thread)."""

    def load(self) -> None:
        """Choose device, precision and batch size, then load the model (once)."""
        if self._loaded:
            return
        started = time.perf_counter()
        if self.on_torch:
            self.device = choose_device(self.requested_device)
            self.dtype = choose_dtype(self.device, self.half_precision_safe)
        else:
            self.device, self.dtype = HOST, None
        self.batch_size = initial_batch_size(
            self.requested_batch_size, self.default_batch_size, self.device
        )
        self.load_model(self.device, self.dtype)
        self.stats.load_s = time.perf_counter() - started
        self._loaded = True
        dtype = str(self.dtype).removeprefix("torch.") if self.on_torch else "its own runtime"
        log.info(
            "%s: %s on %s in %s, batch size %d (requested %s); loaded in %.1f s",
            self.module, self.model_id, self.device.type, dtype, self.batch_size,
            self.requested_batch_size, self.stats.load_s,
        )  # fmt: skip

    # --- What a model job reads and writes (runtime.job.run_model_job) --------------------
    def use_threads(self, threads: int) -> int:
        """Give the job's ``threads`` CPU threads to the model; returns the loader threads
        (one thread drives the model, the rest load batches)."""
        if self.on_torch:
            import torch

            torch.set_num_threads(max(1, threads))
        return max(1, threads - 1)

    def decide(self, shard: JobShard, row: int) -> dict[str, Any] | RowFailure | None:
        """A row settled without the model: its ok-row fields (an image skipped), a
        failure, or None to run the model on it. By default: a failed decode."""
        technical = shard.rows.get("technical")
        if technical is not None and technical[row]["status"] != "ok":
            return RowFailure.passed_on(technical[row], NOT_DECODED)
        return None

    @property
    def image_tier(self) -> str:
        """The tier it reads, for a model that reads pixels."""
        if self.tier is None:
            raise NotImplementedError(f"{self.module}: reads no tiers; it needs its own source")
        return self.tier

    def source(self, shard: JobShard, rows: np.ndarray) -> BatchSource:
        """The manifest ``rows`` of ``shard`` to run, as a batch source: their tier images."""
        return TierBatches(shard.reader, self.image_tier, rows)

    def row_fields(self, result: Any, shard: JobShard, row: int) -> dict[str, Any]:
        """The fields of an ok row (beside path, size, mtime_ns, status) from a result."""
        raise NotImplementedError(f"{self.module}: row_fields")

    def shard_array(self, shard: JobShard, results: Sequence[Any]) -> np.ndarray | None:
        """The shard's array (``<shard>.npy``) from its results by manifest row (None where
        the model did not run), or None for a module without one. Called before the
        shard's ``row_fields``."""
        return None

    def summary_fields(self) -> dict[str, Any]:
        """Fields the job summary adds to the module, model, shards and ``stats``."""
        return {}

    def infer(self, batch: RowBatch) -> Any:
        """One batch synchronously, without threads (queries, tests): postprocessed results."""
        self.load()
        with self._inference_mode():
            return self.postprocess(self._predict(self.preprocess(batch)))

    def run(
        self,
        source: BatchSource,
        deliver: Deliver,
        prefetch: int = PREFETCH_BATCHES,
        loader_threads: int = 1,
    ) -> RunStats:
        """Run the model over every usable row of ``source``.

        ``deliver(indices, results)`` gets each batch's postprocessed results in the writer
        thread, in row order. ``prefetch=0`` loads synchronously (the naive baseline).
        """
        self.load()
        self.stats = RunStats(load_s=self.stats.load_s)
        self._progress = Progress(self.module, source.n_rows)
        started = time.perf_counter()
        loader = ThreadPoolExecutor(max(1, loader_threads), thread_name_prefix="loader")
        writer = ThreadPoolExecutor(1, thread_name_prefix="writer")
        writes: deque[Future] = deque()
        try:
            batches = self._loaded_batches(source, loader, prefetch, loader_threads)
            for indices, inputs in batches:
                for chunk_indices, outputs in self._predict_in_chunks(indices, inputs):
                    writes.append(writer.submit(self._write, deliver, chunk_indices, outputs))
                    while len(writes) > WRITER_BACKLOG:
                        writes.popleft().result()
            while writes:
                writes.popleft().result()
        finally:
            loader.shutdown(cancel_futures=True)
            # Batches already predicted are still written: a job that stops keeps them.
            writer.shutdown()
        self.stats.total_s = time.perf_counter() - started
        self.stats.batch_size = self.batch_size
        self._progress.reach(source.n_rows)
        self._progress.finish()
        self._log_stats()
        return self.stats

    def _loaded_batches(
        self, source: BatchSource, loader: ThreadPoolExecutor, prefetch: int, threads: int
    ) -> Iterator[tuple[np.ndarray, ModelInputs]]:
        """Preprocessed batches in row order, with ``prefetch`` loads in flight (0: none)."""
        ranges = self._row_ranges(source.n_rows)
        if prefetch <= 0:
            for start, stop in ranges:
                yield from self._timed(functools.partial(self._load_batch, source, start, stop))
            return

        def submit(count: int) -> Iterator[Future]:
            for start, stop in itertools.islice(ranges, count):
                yield loader.submit(self._load_batch, source, start, stop)

        pending = deque(submit(max(prefetch, threads)))
        while pending:
            future = pending.popleft()
            pending.extend(submit(1))
            yield from self._timed(future.result)

    def _timed(
        self, get_batch: Callable[[], tuple[np.ndarray, ModelInputs | None]]
    ) -> Iterator[tuple[np.ndarray, ModelInputs]]:
        """Wait for a loaded batch, count the wait, and yield it unless it has no rows."""
        began = time.perf_counter()
        indices, inputs = get_batch()
        waited = time.perf_counter() - began
        if self.stats.batches == 0:
            self.stats.first_wait_s += waited
        else:
            self.stats.wait_s += waited
        if len(indices) and inputs is not None:  # inputs is None when no row was usable
            self.stats.batches += 1
            yield indices, inputs

    def _row_ranges(self, n_rows: int) -> Iterator[tuple[int, int]]:
        """Consecutive row ranges, each as long as the batch size when it is asked for."""
        start = 0
        while start < n_rows:
            stop = min(start + self.batch_size, n_rows)
            yield start, stop
            start = stop

    def _load_batch(
        self, source: BatchSource, start: int, stop: int
    ) -> tuple[np.ndarray, ModelInputs | None]:
        batch = source.read(start, stop)
        if not len(batch.indices):
            return batch.indices, None
        inputs = self.preprocess(batch)
        if self.device.type == "cuda":
            inputs = inputs.pin_memory()  # lets the copy to the GPU run asynchronously
        return batch.indices, inputs

    def _predict_in_chunks(
        self, indices: np.ndarray, inputs: ModelInputs
    ) -> Iterator[tuple[np.ndarray, Any]]:
        """Predict a loaded batch in chunks of the batch size, halving it on out-of-memory."""
        start = 0
        while start < len(indices):
            chunk = slice(start, start + self.batch_size)
            outputs = self._try_predict(inputs[chunk])
            if outputs is _OUT_OF_MEMORY:
                # Retried only now: the failed attempt's exception and tensors are released.
                self._back_off(len(indices[chunk]))
                continue
            yield indices[chunk], outputs
            start = chunk.stop

    def _try_predict(self, chunk: ModelInputs) -> Any:
        began = time.perf_counter()
        try:
            outputs = self._predict(chunk)
        except Exception as error:
            if not is_out_of_memory(error) or len(chunk) == 1:
                raise
            return _OUT_OF_MEMORY
        self.stats.predict_s += time.perf_counter() - began
        self.stats.images += len(chunk)
        return outputs

    def _inference_mode(self) -> contextlib.AbstractContextManager:
        if not self.on_torch:
            return contextlib.nullcontext()
        import torch

        return torch.inference_mode()

    def _predict(self, chunk: ModelInputs) -> Any:
        with self._inference_mode():
            inputs = chunk.to(self.device, non_blocking=True)
            if inputs.is_floating_point():
                inputs = inputs.to(self.dtype)
            return self.predict_batch(inputs)

    def _back_off(self, failed_size: int) -> None:
        self.batch_size = max(1, failed_size // 2)
        self.stats.oom_backoffs += 1
        message = "%s: out of memory at batch size %d on %s; retrying at %d"
        args = (self.module, failed_size, self.device.type, self.batch_size)
        if self.requested_batch_size == "auto":
            log.info(message, *args)
        else:
            log.warning(message + " (lower %s.batch_size in config.yaml)", *args, self.module)

    def _write(self, deliver: Deliver, indices: np.ndarray, outputs: Any) -> None:
        with self._inference_mode():
            deliver(indices, self.postprocess(outputs))
        if len(indices):  # rows are written in order: every row up to the last one is done
            self._progress.reach(int(indices[-1]) + 1)

    def _log_stats(self) -> None:
        s = self.stats
        rate = s.images / s.total_s if s.total_s > 0 else 0.0
        log.info(
            "%s: %d images in %d batches, %.2f s (%.1f images/s); waited for the loader "
            "%.2f s after the first batch (first %.2f s), predict %.2f s, model load %.1f s, "
            "%d out-of-memory back-offs",
            self.module, s.images, s.batches, s.total_s, rate, s.wait_s,
            s.first_wait_s, s.predict_s, s.load_s, s.oom_backoffs,
        )  # fmt: skip


def decode_failures(technical: str | None, n_rows: int) -> dict[int, RowFailure]:
    """Row -> failure (reason and error kind) for the rows whose decode failed, from the decode
    job's technical rows (manifest order); empty if there is no technical file."""
    if technical is None:
        return {}
    rows = list(read_rows(technical))
    check_row_count(technical, len(rows), n_rows)
    return {
        i: RowFailure.passed_on(row, NOT_DECODED)
        for i, row in enumerate(rows)
        if row["status"] != "ok"
    }
