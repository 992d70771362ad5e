"""GPU sharing: when a run shares its GPUs between GPU jobs, and what a job declares."""

from __future__ import annotations

from imganalyzer.runtime.gpushare import JOBS_PER_GPU, gpu_sharing
from imganalyzer.runtime.registry import MODELS


def test_sharing_needs_gpu_memory_a_gpu_and_a_local_run() -> None:
    assert gpu_sharing(1, None, local=True) is None  # --resources gpu=1: a GPU per job
    assert gpu_sharing(1, 40000, local=False) is None  # a cluster job gets its own GPU
    assert gpu_sharing(0, 40000, local=True) is None
    assert gpu_sharing(None, 40000, local=True) is None
    sharing = gpu_sharing(1, 40000, local=True)
    assert sharing is not None and sharing.slots == JOBS_PER_GPU


def test_a_job_declares_its_entry_memory_capped_at_one_gpu() -> None:
    sharing = gpu_sharing(2, 32000, local=True)  # two GPUs of 16000 MB
    assert sharing is not None and sharing.slots == 2 * JOBS_PER_GPU
    embedding, captions = MODELS["embedding"].gpu_mem_mb, MODELS["captions"].gpu_mem_mb
    assert 0 < embedding < 16000 < captions
    assert sharing.job_memory_mb(embedding) == embedding
    assert sharing.job_memory_mb(captions) == 16000  # alone it still fits on one GPU
    assert sharing.job_memory_mb(0) == 16000  # no stated need: a whole GPU's share


def test_every_gpu_module_states_its_gpu_memory() -> None:
    assert all(spec.gpu_mem_mb > 0 for spec in MODELS.values() if spec.gpu)
