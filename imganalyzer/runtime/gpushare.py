"""Two GPU jobs on one GPU, when the GPU memory they declare fits.

One model job leaves the GPU idle part of the time (its loader, its host-side steps, the
launch gaps of a decoding loop); a second job on the same GPU fills those gaps. Snakemake
counts resources in whole units, so sharing works in slots: with a ``gpu_mem_mb`` resource
given (``--resources gpu=1 gpu_mem_mb=70000``, or the profile's ``resources``), a local run
turns each of its ``gpu`` GPUs into ``JOBS_PER_GPU`` slots, every GPU job holds one slot and
declares the GPU memory it needs (its registry entry's ``gpu_mem_mb``, at most one GPU's share of
``gpu_mem_mb``), and Snakemake starts a second GPU job only when both fit. ``gpu=1`` still
means one physical GPU: without ``gpu_mem_mb`` (or on a cluster, where each job gets its own
GPU) a GPU job holds a whole GPU, as before.

The workflow reads this when it parses (``workflow/rules/common.smk``); nothing here imports
Snakemake.
"""

from __future__ import annotations

from dataclasses import dataclass

# GPU jobs on one GPU at once when sharing: two fill each other's idle gaps; more would
# also share the host's cores and the GPU's copy engines with little left to gain.
JOBS_PER_GPU = 2


@dataclass(frozen=True)
class GpuSharing:
    """``gpus`` GPUs shared by GPU jobs within ``memory_mb`` of declared GPU memory."""

    gpus: int
    memory_mb: int

    @property
    def slots(self) -> int:
        """The ``gpu`` resource's new limit: GPU jobs that may run at once."""
        return self.gpus * JOBS_PER_GPU

    def job_memory_mb(self, needed_mb: int) -> int:
        """What a job that needs ``needed_mb`` declares: never more than one GPU's share, so
        that a job alone always fits; that whole share when it states no need (0)."""
        share = self.memory_mb // self.gpus
        return min(needed_mb, share) if needed_mb > 0 else share

    def summary(self) -> str:
        return (
            f"GPU sharing: up to {JOBS_PER_GPU} GPU jobs per GPU ({self.gpus} GPU) within "
            f"{self.memory_mb} MB of declared GPU memory"
        )


def gpu_sharing(gpus: int | None, memory_mb: int | None, local: bool) -> GpuSharing | None:
    """The sharing a run's global resources ask for (``gpu``, ``gpu_mem_mb``), or None: on a
    cluster (``local`` False), without ``gpu_mem_mb``, or without a GPU."""
    if not local or memory_mb is None or not gpus or gpus <= 0:
        return None
    return GpuSharing(int(gpus), int(memory_mb))
