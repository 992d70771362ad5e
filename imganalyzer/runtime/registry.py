"""The model registry (data): which models the modules load, and how they are named.

``MODELS`` says, for every model module, which loader it uses, the tier it reads, its
default batch size, the keys of ``config[module]`` that name its model (and their
defaults) and a version string that the workflow puts in the rule's ``params:``.
Where each configured model loads from, and fetching it, is in ``runtime.weights``.

This module imports neither torch nor open_clip at import time: the Snakefile reads the
version strings from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from imganalyzer.errors import ConfigError

LoaderKind = Literal[
    "open_clip", "huggingface", "insightface", "torch-state-dict", "bundled", "remote"
]

FETCH_COMMAND = "imganalyzer models fetch"
AESTHETIC_WEIGHTS_URL = (
    "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
    "sac%2Blogos%2Bava1-l14-linearMSE.pth"
)


@dataclass(frozen=True)
class ModelSpec:
    """What the runtime, the CLI and the config need to know about one model module."""

    module: str
    loader: LoaderKind
    tier: str | None  # the tier it reads; None: it reads no pixels
    default_batch_size: int  # the start of batch_size "auto" on an accelerator
    model_keys: Mapping[str, Any]  # keys of config[module] naming the model -> default
    version: str  # bump when the module's output changes: the workflow then re-runs it


MODELS: Mapping[str, ModelSpec] = MappingProxyType(
    {
        "embedding": ModelSpec(
            module="embedding",
            loader="open_clip",
            tier="clip",
            # ViT-L/14 in bf16 at 256 images: ~1.5 GB of activations (estimated: 256 x 257
            # tokens x 4096 MLP width x 2 bytes, as much again for attention); out-of-memory
            # back-off halves it on small GPUs.
            default_batch_size=256,
            model_keys=MappingProxyType({"model": "ViT-L-14", "pretrained": "openai"}),
            version="1",
        ),
        "aesthetic": ModelSpec(
            module="aesthetic",
            loader="torch-state-dict",
            tier=None,
            # A 1.0 M-parameter MLP on stored 768-d vectors: a whole shard is one batch.
            default_batch_size=4096,
            model_keys=MappingProxyType({"weights": AESTHETIC_WEIGHTS_URL}),
            version="1",
        ),
        "objects": ModelSpec(
            module="objects",
            loader="huggingface",
            tier="detect",
            # GroundingDINO-T at 1024 px in bf16: ~0.5 GB of activations per 8 images.
            default_batch_size=8,
            model_keys=MappingProxyType({"model": "IDEA-Research/grounding-dino-tiny"}),
            version="1",
        ),
        "captions": ModelSpec(
            module="captions",
            loader="huggingface",
            tier="clip",
            # BLIP-2 OPT-2.7B: generation dominates and is bound by kernel launches, so large
            # batches pay: on an H200 (bench/gpu) 128 gave 71.5 images/s and 22 GiB against
            # 48 at 32; "auto" halves it on a smaller GPU that runs out of memory.
            default_batch_size=128,
            model_keys=MappingProxyType({"model": "Salesforce/blip2-opt-2.7b"}),
            version="1",
        ),
        "ocr": ModelSpec(
            module="ocr",
            loader="bundled",
            tier=None,  # reads the original, bounded by ocr.max_side
            default_batch_size=1,
            model_keys=MappingProxyType(
                {"backend": "rapidocr", "trocr_model": "microsoft/trocr-base-printed"}
            ),
            version="1",
        ),
        "cloud": ModelSpec(
            module="cloud",
            loader="remote",
            tier="detect",  # the largest tier of at most 1568 px (the providers' limit)
            default_batch_size=1,
            model_keys=MappingProxyType({"provider": "anthropic", "model": None}),
            version="1",
        ),
        "faces": ModelSpec(
            module="faces",
            loader="insightface",
            tier="detect",
            default_batch_size=1,  # InsightFace detects one image at a time
            model_keys=MappingProxyType({"pack": "buffalo_l"}),
            version="1",
        ),
    }
)


# The embedding model the head was trained on (any open_clip alias of it).
AESTHETIC_EMBEDDINGS = {("ViT-L-14", "openai"), ("ViT-L-14-quickgelu", "openai")}


def check_aesthetic_compatible(
    embedding_model: str, pretrained: str | None, weights: str = AESTHETIC_WEIGHTS_URL
) -> None:
    """Raise ConfigError unless the embedding is the one the aesthetic head was trained on.

    Checked for LAION's head (the default weights). A head of your own, given as another
    path or URL, is yours to match: the job still checks that the dimensions agree.
    Here, not in modules.aesthetic, so the Snakefile can call it without importing torch.
    """
    if weights != AESTHETIC_WEIGHTS_URL:
        return
    if (embedding_model, pretrained) not in AESTHETIC_EMBEDDINGS:
        raise ConfigError(
            "config key 'embedding': the aesthetic module scores OpenAI CLIP ViT-L/14 "
            f"embeddings (768-d), but embedding.model is {embedding_model!r} with pretrained "
            f"{pretrained!r}; set embedding.model: ViT-L-14 and embedding.pretrained: openai, "
            "or remove aesthetic from modules (or give aesthetic.weights of a head trained "
            "on your embedding)"
        )


class ModelNotFoundError(RuntimeError):
    """A configured model is not available locally and could not be fetched."""

    def __init__(self, model: str, looked: str, reason: str = "") -> None:
        because = f" ({reason})" if reason else ""
        super().__init__(
            f"model {model} not found: looked in {looked}{because}. Download every configured "
            f"model with `{FETCH_COMMAND}` (on a machine with internet; copy the caches to "
            "offline nodes), or set a local path in config.yaml."
        )


@dataclass(frozen=True)
class ModelLocation:
    """Where a configured model loads from."""

    module: str
    model: str  # as configured, e.g. "ViT-L-14:openai"
    source: str  # a file, a folder or a cache (and the URL it comes from)
    present: bool
    path: Path | None  # the local file or folder (where it is, or where a fetch puts it)

    def local_path(self) -> Path:
        """``path``, for a model that loads from a local file or folder."""
        if self.path is None:
            raise ModelNotFoundError(self.model, self.source, "it has no local file or folder")
        return self.path


def model_settings(module: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config[module]``'s model keys, with the registry's defaults for absent ones."""
    section = config.get(module) or {}
    return {key: section.get(key, default) for key, default in MODELS[module].model_keys.items()}


def configured_modules(config: Mapping[str, Any]) -> list[str]:
    """The enabled modules (``config["modules"]``) that load a model, in registry order."""
    enabled = set(config.get("modules", ()))
    return [module for module in MODELS if module in enabled]


def format_table(locations: list[ModelLocation]) -> str:
    """The ``imganalyzer models list`` table: module, model, present, source."""
    header = ("module", "model", "present", "source")
    rows = [header] + [
        (loc.module, loc.model, "yes" if loc.present else "no", loc.source) for loc in locations
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    )
