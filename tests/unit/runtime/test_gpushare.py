"""GPU sharing: when a run shares its GPUs between GPU jobs, and what a job declares."""

from __future__ import annotations

from imganalyzer.runtime.gpushare import GPU_MEMORY_MB, JOBS_PER_GPU, gpu_sharing


def test_sharing_needs_gpu_memory_a_gpu_and_a_local_run() -> None:
    assert gpu_sharing(1, None, local=True) is None  # --resources gpu=1: a GPU per job
    assert gpu_sharing(1, 40000, local=False) is None  # a cluster job gets its own GPU
    assert gpu_sharing(0, 40000, local=True) is None
    assert gpu_sharing(None, 40000, local=True) is None
    sharing = gpu_sharing(1, 40000, local=True)
    assert sharing is not None and sharing.slots == JOBS_PER_GPU


def test_a_job_declares_its_module_memory_capped_at_one_gpu() -> None:
    sharing = gpu_sharing(2, 32000, local=True)  # two GPUs of 16000 MB
    assert sharing is not None and sharing.slots == 2 * JOBS_PER_GPU
    assert sharing.job_memory_mb("embedding") == GPU_MEMORY_MB["embedding"]
    assert sharing.job_memory_mb("captions") == 16000  # alone it still fits on one GPU
