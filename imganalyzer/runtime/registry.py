"""The model registry (data): one entry per model module, from which everything else follows.

An entry (``ModelSpec``) names the module's class and settings type (import paths: the
Snakefile reads the registry without importing torch), what its jobs read, the resources a
job holds, the weights it loads and the fields the index takes from its rows. From
``MODELS`` come the model rules (workflow/rules/models.smk), their one script
(scripts/model_job.py), the schema's module list, preflight, ``imganalyzer models`` and the
index's fields; ``runtime.weights`` locates and fetches the weights.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from imganalyzer.errors import ConfigError

WeightsKind = Literal[
    "open_clip", "huggingface", "insightface", "weights-file", "bundled", "remote"
]

FETCH_COMMAND = "imganalyzer models fetch"
AESTHETIC_WEIGHTS_URL = (
    "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
    "sac%2Blogos%2Bava1-l14-linearMSE.pth"
)
TECHNICAL = "technical"  # the decode job's rows: not a model module's
# Params of every model rule; the others are the module's settings.
JOB_PARAMS = ("results", "shards", "retry", "version", "rerun", "quiet")


class QuietSettings(Mapping[str, Any]):
    """Settings a rule passes its job without Snakemake comparing them: its params trigger
    leaves out a value it cannot represent (not a builtin such as dict), so these never
    re-run a job (see ``ModelSpec.speed_keys`` and ``later_keys``)."""

    def __init__(self, items: Iterable[tuple[str, Any]] = ()) -> None:
        self._settings = dict(items)

    def __getitem__(self, key: str) -> Any:
        return self._settings[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._settings)

    def __len__(self) -> int:
        return len(self._settings)

    def __repr__(self) -> str:
        return f"QuietSettings({self._settings!r})"


@dataclass(frozen=True)
class Weights:
    """The weights a module loads: their ``kind`` (``runtime.weights.KINDS``) and the keys of
    its config section naming them. ``when`` (key, value): these weights only then, else
    ``otherwise`` (ocr loads TrOCR only with backend trocr)."""

    kind: WeightsKind
    keys: tuple[str, ...] = ("model",)
    when: tuple[str, str] | None = None
    otherwise: Weights | None = None

    def chosen(self, section: Mapping[str, Any]) -> Weights:
        if self.when is None or section.get(self.when[0]) == self.when[1]:
            return self
        assert self.otherwise is not None, "a conditional Weights needs otherwise"
        return self.otherwise.chosen(section)


@dataclass(frozen=True)
class Indexed:
    """A field of a module's ok rows that the index reads into field ``into`` (by default its
    own name); one ``search.documents`` lacks is added as ``kind`` with ``boost``."""

    field: str
    into: str = ""
    kind: str = "text"
    boost: float = 1.0


@dataclass(frozen=True)
class ModelSpec:
    """What the workflow, the runtime, the CLI and the config know of one model module."""

    module: str
    model: str  # "package.module:Class", a BatchedModel subclass, imported when a job runs
    settings: str  # "package.module:Class", its config.Settings (the config section)
    weights: Weights
    mem_mb: int  # host memory of one job (SLURM asks for it)
    version: str = "1"  # bump when the module's output changes: the workflow then re-runs it
    tier: str | None = None  # the tier it reads; None: no pixels from the tier store
    default_batch_size: int = 1  # the start of batch_size "auto" on an accelerator
    # Rows of these modules for the job's shards ("technical": the decode job's) and arrays
    # (aesthetic: the embedding vectors). A model module read here must be enabled too.
    inputs: tuple[str, ...] = (TECHNICAL,)
    input_arrays: tuple[str, ...] = ()
    gate: str | None = None  # rows also read when this module is enabled (faces: objects)
    array: bool = False  # its jobs write <shard>.npy beside the rows
    # Top-level config keys its settings read besides its section.
    config_keys: tuple[str, ...] = ("device",)
    # True: on a GPU unless device is cpu; (key, value): only when its section's key has it.
    gpu: bool | tuple[str, str] = False
    # The GPU memory a job declares when GPU jobs share a GPU (runtime.gpushare): the GPU
    # kit's peak on an H200 at the default batch size (bench/gpu/results), plus room for the
    # CUDA context and fragmentation. A batch that outgrows it backs off on out-of-memory.
    gpu_mem_mb: int = 0
    threads: int = 2  # one drives the model, the others load and preprocess the next batches
    resources: Mapping[str, int] = field(default_factory=dict)  # beside gpu and mem_mb
    # "package.module:function" of the job's row files whose value is a param: a change
    # re-runs the job (cloud: the images an earlier run's budget left out).
    rerun: str | None = None
    # Its params hold each settings key apart (True) or the section as one (False): kept as
    # each module was first released, so that an upgrade re-runs no job.
    params_by_key: bool = False
    # Settings keys that change how fast a job runs, never its rows: no re-run when they
    # change (passed in the QuietSettings param).
    speed_keys: tuple[str, ...] = ()
    # Settings keys added after the module's first release: at their default they are
    # passed quietly too, so that an upgrade re-runs no job; set to another value they are
    # compared like the others (a change re-runs the module).
    later_keys: tuple[str, ...] = ()
    index: tuple[Indexed, ...] = ()
    # Its config section's properties where the schema file has none (a new module).
    schema: Mapping[str, Any] | None = None

    def model_class(self) -> Any:  # a runtime.batched.BatchedModel subclass
        return _imported(self.model)

    def settings_type(self) -> Any:
        return _imported(self.settings)

    @property
    def needs(self) -> tuple[str, ...]:
        """The model modules whose results it reads: they must run too."""
        return tuple(m for m in self.inputs + self.input_arrays if m in MODELS)

    def holds_gpu(self, config: Mapping[str, Any]) -> bool:
        """Whether its jobs hold a GPU: never with device cpu; with ``gpu`` (key, value) only
        when its section's key has that value."""
        if self.gpu is False or config["device"] == "cpu":
            return False
        return self.gpu is True or config[self.module][self.gpu[0]] == self.gpu[1]

    def rule_params(self, config: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
        """Its settings as its rule's params (Snakemake re-runs a job when they change), but
        for its quiet ones (``speed_keys``, and ``later_keys`` at their value in
        ``defaults``, the schema's config)."""
        section = dict(config[self.module])
        quiet = QuietSettings(
            (key, section.pop(key))
            for key in [*self.speed_keys, *self.later_keys]
            if key in self.speed_keys or section[key] == defaults[self.module][key]
        )
        params = section if self.params_by_key else {"settings": section}
        return params | {"quiet": quiet} | {key: config[key] for key in self.config_keys}

    def config_of(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The config its settings are built from, out of its rule's params."""
        own = {k: v for k, v in params.items() if k not in JOB_PARAMS + self.config_keys}
        section = own if self.params_by_key else own["settings"]
        section = {**section, **params.get("quiet", {})}
        return {self.module: section} | {key: params[key] for key in self.config_keys}

    def rerun_value(self, row_files: Sequence[Path]) -> Any:
        return _imported(self.rerun)(row_files) if self.rerun else None


def _imported(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


_HF = Weights("huggingface")


def _registry(*specs: ModelSpec) -> Mapping[str, ModelSpec]:
    return MappingProxyType({spec.module: spec for spec in specs})


MODELS: Mapping[str, ModelSpec] = _registry(
    ModelSpec(
        module="embedding",
        model="imganalyzer.modules.embedding:ClipEmbedder",
        settings="imganalyzer.modules.embedding:EmbeddingSettings",
        weights=Weights("open_clip", ("model", "pretrained")),
        tier="clip",
        # ViT-L/14 in bf16 at 256 images: ~1.5 GB of activations (estimated: 256 x 257
        # tokens x 4096 MLP width x 2 bytes, as much again for attention); out-of-memory
        # back-off halves it on small GPUs.
        default_batch_size=256,
        array=True,  # the vectors go to vectors.npy; its rows give status and errors
        gpu=True,
        gpu_mem_mb=4000,  # ViT-L/14 bf16, batch 256: 2.6 GiB
        threads=3,  # one drives the model, two read and decode the next batches
        # fp32 weights and their checkpoint on the host while loading (2 x 1.7 GB),
        # CUDA/torch libraries (~1.5 GB), prefetched batches (~0.5 GB at batch size 256).
        mem_mb=8000,
        params_by_key=True,
        speed_keys=("decode_on_device",),
    ),
    ModelSpec(
        module="aesthetic",
        model="imganalyzer.modules.aesthetic:AestheticScorer",
        settings="imganalyzer.modules.aesthetic:AestheticSettings",
        weights=Weights("weights-file", ("weights",)),
        # A 1.0 M-parameter MLP on stored 768-d vectors: a whole shard is one batch, on CPU.
        default_batch_size=4096,
        inputs=("embedding",),
        input_arrays=("embedding",),
        config_keys=(),
        threads=1,
        mem_mb=1500,
        params_by_key=True,
        index=(Indexed("aesthetic"),),
    ),
    ModelSpec(
        module="objects",
        model="imganalyzer.modules.objects:ObjectDetector",
        settings="imganalyzer.modules.objects:ObjectSettings",
        weights=_HF,
        tier="detect",
        default_batch_size=8,  # GroundingDINO-T at 1024 px in bf16: ~0.5 GB per 8 images
        gpu=True,
        gpu_mem_mb=8000,  # bf16 + fp32 islands, batch 8 at 800 px: 6.9 GiB
        # ~0.7 GB fp32 on the host while loading, torch/CUDA libraries, 1024 px batches.
        mem_mb=6000,
        speed_keys=("compile",),
        later_keys=("input_short_edge", "input_multiple"),
        index=(Indexed("labels"), Indexed("has_text"), Indexed("has_person")),
    ),
    ModelSpec(
        module="captions",
        model="imganalyzer.modules.captions:Captioner",
        settings="imganalyzer.modules.captions:CaptionSettings",
        weights=_HF,
        tier="clip",
        # BLIP-2 OPT-2.7B: generation dominates and is bound by kernel launches, so large
        # batches pay: on an H200 (bench/gpu) 128 gave 71.5 images/s and 22 GiB against
        # 48 at 32; "auto" halves it on a smaller GPU that runs out of memory.
        default_batch_size=128,
        gpu=True,
        gpu_mem_mb=24000,  # bf16, batch 128 x 5 prompts: 22.4 GiB
        mem_mb=16000,  # 7.7 GB of fp16 weights, loaded through the host
        speed_keys=("static_cache", "separate_answers"),  # the same tokens either way
        later_keys=("max_answer_tokens",),
        index=(Indexed("caption"), Indexed("answers")),
    ),
    ModelSpec(
        module="ocr",
        model="imganalyzer.modules.ocr:OcrReader",
        settings="imganalyzer.modules.ocr:OcrSettings",
        weights=Weights(
            "huggingface",
            ("trocr_model",),
            when=("backend", "trocr"),
            otherwise=Weights("bundled", ("backend",)),
        ),
        inputs=("objects",),  # reads the originals of the images objects saw text in
        config_keys=("library", "max_pixels", "device"),
        gpu=("backend", "trocr"),  # PP-OCR (rapidocr) runs on the CPU
        gpu_mem_mb=4000,  # TrOCR base
        mem_mb=4000,
        index=(Indexed("text", "ocr_text"),),
    ),
    ModelSpec(
        module="cloud",
        model="imganalyzer.modules.cloud_job:CloudDescriber",
        settings="imganalyzer.modules.cloud:CloudSettings",
        weights=Weights("remote", ("provider", "model", "api_key_env", "base_url")),
        tier="detect",  # the largest tier of at most 1568 px (the providers' limit)
        config_keys=(),
        threads=2,  # reading and encoding tiers; requests run concurrently in threads
        mem_mb=2000,
        # --resources cloud_api=1: one job sends at a time (requests per minute are per job)
        resources=MappingProxyType({"cloud_api": 1}),
        rerun="imganalyzer.modules.cloud_budget:budget_skipped",
        index=(
            Indexed("description"),
            Indexed("keywords", "labels"),
            Indexed("objects", "labels"),
            Indexed("text_seen", "ocr_text"),
        ),
    ),
    ModelSpec(
        module="faces",
        model="imganalyzer.modules.faces:FaceAnalyzer",
        settings="imganalyzer.modules.faces:FaceSettings",
        weights=Weights("insightface", ("pack",)),
        tier="detect",  # InsightFace detects one image at a time: batch size 1
        gate="objects",  # only the images objects saw a person in
        array=True,
        gpu=True,
        gpu_mem_mb=3000,  # buffalo_l on onnxruntime's CUDA provider
        mem_mb=4000,  # buffalo_l: detector + recogniser + attributes, ~350 MB of ONNX
        index=(Indexed("people"),),  # names and aliases from people.json
    ),
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


# What to do about a model a job (or a search) could not load.
FETCH_ADVICE = (
    f"Download every configured model with `{FETCH_COMMAND}` (on a machine with internet; "
    "copy the caches to offline nodes), or set a local path in config.yaml."
)


class ModelNotFoundError(RuntimeError):
    """A configured model is not available locally and could not be fetched: ``model``,
    where it was ``looked`` for and the ``reason``. Its message advises the fetch command
    (``FETCH_ADVICE``): right where a job or a search meets it. The fetch command itself
    reports ``reason`` with advice of its own (``runtime.preflight.fetch_message``)."""

    def __init__(self, model: str, looked: str, reason: str = "") -> None:
        self.model, self.looked, self.reason = model, looked, reason
        because = f" ({reason})" if reason else ""
        super().__init__(f"model {model} not found: looked in {looked}{because}. {FETCH_ADVICE}")


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
