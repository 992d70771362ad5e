"""Where each configured model loads from, and fetching it (the registry is in
``runtime.registry``).

A model is named the way its library names it: an open_clip name plus a pretrained tag
(``ViT-L-14`` / ``openai``), ``hf-hub:org/repo``, ``local-dir:/folder``, a local weights
file, or a URL. ``locate`` says where it would load from and whether it is there;
``fetch`` downloads it into the library's standard cache (Hugging Face hub cache,
``~/.cache/clip``, torch hub's ``checkpoints/``). Both go by the kind of weights of the
module's registry entry (``KINDS``). A missing model that cannot be fetched raises
``ModelNotFoundError``: its message names the model, where it looked and the fetch command.

torch, open_clip, huggingface_hub and insightface are imported inside the functions that
need them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from imganalyzer.errors import ConfigError
from imganalyzer.runtime.registry import MODELS, ModelLocation, ModelNotFoundError

# Weight files open_clip looks for in a Hugging Face repo, preferred first.
_OPEN_CLIP_HF_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_OPEN_CLIP_HF_CONFIG = "open_clip_config.json"
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".npz")
# Where open_clip downloads a tag's weights that are not on the Hugging Face hub.
_OPEN_CLIP_CACHE = Path("~/.cache/clip").expanduser()


@dataclass(frozen=True)
class Cache:
    """A folder a download fills: what it is, where it is here, and where an environment
    variable moves it (``$HF_HUB_CACHE``; empty: none does). Copying it from a machine that
    has the models provides them offline."""

    name: str
    folder: Path
    moved_by: str


@dataclass(frozen=True)
class WeightsKind:
    """How weights of one kind are located, fetched and downloaded. Each function takes
    the values of the config keys that the module's ``registry.Weights`` names."""

    locate: Callable[..., ModelLocation]
    fetch: Callable[..., Any] | None  # None: nothing to download
    host: Callable[..., str | None]  # where a download comes from; None: it cannot be
    cache: Callable[..., Cache | None] = lambda *names: None  # the folder a download fills
    missing: str = ""  # why it is missing when no download helps; preflight's words
    hint: str = ""  # how to provide it then, after the fetch command


def chosen(module: str, config: Mapping[str, Any]) -> tuple[WeightsKind, tuple[Any, ...]]:
    """The kind of weights ``config`` makes ``module`` load, and the values naming them."""
    section = config[module]
    weights = MODELS[module].weights.chosen(section)
    return KINDS[weights.kind], tuple(section[key] for key in weights.keys)


def cache(module: str, config: Mapping[str, Any]) -> Cache | None:
    """The cache folder a download of ``module``'s model fills (None: it is not downloaded)."""
    kind, names = chosen(module, config)
    return kind.cache(*names)


def locate(module: str, config: Mapping[str, Any]) -> ModelLocation:
    """Where ``module``'s model, as the validated ``config`` names it, loads from."""
    kind, names = chosen(module, config)
    return dataclasses.replace(kind.locate(*names), module=module)


def fetch(module: str, config: Mapping[str, Any]) -> ModelLocation:
    """Download ``module``'s configured model into its standard cache (if absent)."""
    kind, names = chosen(module, config)
    if kind.fetch is not None:
        kind.fetch(*names)
    return locate(module, config)


@contextlib.contextmanager
def _downloading(model: str, source: str) -> Iterator[None]:
    """A download: any error in it (network, HTTP, the hub's) means the model is missing."""
    try:
        yield
    except Exception as error:  # noqa: BLE001
        reason = f"download failed: {type(error).__name__}: {error}".splitlines()[0]
        raise ModelNotFoundError(model, source, reason) from error


def downloads_allowed() -> bool:
    """False when HF_HUB_OFFLINE is set: jobs then use caches only and fail fast."""
    return os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("1", "true", "yes", "on")


def is_url(value: str) -> bool:
    return urlparse(value).scheme in ("http", "https", "file")


def is_local(name: str) -> bool:
    """A folder or path (not a repo or pack name to download)."""
    return Path(name).expanduser().is_dir() or name.startswith((".", "/", "~"))


def hub_host() -> str | None:
    return url_host(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


def url_host(url: str) -> str | None:
    """Where a download from ``url`` comes from: its host name for https on the default
    port, else its origin (``http://mirror:8080``)."""
    parts = urlparse(url)
    if not parts.hostname:
        return None
    if parts.scheme == "https" and parts.port in (None, 443):
        return parts.hostname
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def hub_cache() -> Cache:
    return Cache("Hugging Face hub cache", Path(_hf_cache_dir()), "$HF_HUB_CACHE")


# --- open_clip ----------------------------------------------------------------------------------
def _is_weights_path(pretrained: str) -> bool:
    """Pretrained tags are plain words; anything path-like names a weights file."""
    return "/" in pretrained or os.sep in pretrained or pretrained.endswith(_WEIGHT_SUFFIXES)


def _hf_cache_dir() -> str:
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE  # read per call: HF_HUB_CACHE may be redirected


def _hf_cached(repo: str, filenames: tuple[str, ...]) -> Path | None:
    """The first of ``filenames`` found in the local Hugging Face cache of ``repo``."""
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo, filename, cache_dir=_hf_cache_dir())
        if isinstance(found, str):
            return Path(found)
    return None


def _hf_location(model: str, repo: str, filenames: tuple[str, ...]) -> ModelLocation:
    found = _hf_cached(repo, filenames)
    source = f"the Hugging Face cache {_hf_cache_dir()} (repo {repo})"
    return ModelLocation("embedding", model, source, found is not None, found)


def _pretrained_tag_config(model_name: str, tag: str) -> dict[str, Any]:
    import open_clip

    if open_clip.get_model_config(model_name) is None:
        raise ConfigError(
            f"config key 'embedding.model': {model_name!r} is not an open_clip model "
            "(see open_clip.list_models(); or use hf-hub:org/repo or local-dir:/folder)"
        )
    config = open_clip.get_pretrained_cfg(model_name, tag)
    if not config:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        raise ConfigError(
            f"config key 'embedding.pretrained': {tag!r} is neither a pretrained tag of "
            f"{model_name} (tags: {tags}) nor a weights file path"
        )
    return config


def _tag_source(config: Mapping[str, Any]) -> tuple[str | None, tuple[str, ...], str]:
    """(Hugging Face repo or None, its candidate files, download URL) of a tag's weights,
    as ``open_clip.download_pretrained`` picks them (hub first, .safetensors first)."""
    repo, filename = os.path.split(config.get("hf_hub", ""))
    files: tuple[str, ...]
    if not filename or filename == _OPEN_CLIP_HF_FILES[1]:
        files = _OPEN_CLIP_HF_FILES
    elif filename.endswith((".bin", ".pth")):
        files = (filename[:-4] + ".safetensors", filename)
    else:
        files = (filename,)
    return (repo or None), files, config.get("url", "")


def open_clip_id(model_name: str, pretrained: str | None) -> str:
    """``name:pretrained`` as open_clip lists them; hf-hub/local-dir names stand alone
    (open_clip ignores ``pretrained`` for them)."""
    if not pretrained or _has_schema(model_name):
        return model_name
    return f"{model_name}:{pretrained}"


def _has_schema(model_name: str) -> bool:
    return model_name.startswith(("hf-hub:", "local-dir:"))


def _is_downloadable(model_name: str, pretrained: str | None) -> bool:
    if _has_schema(model_name):
        return model_name.startswith("hf-hub:")
    return bool(pretrained and not _is_weights_path(pretrained))


def open_clip_host(model_name: str, pretrained: str | None) -> str | None:
    if not _is_downloadable(model_name, pretrained):
        return None
    if model_name.startswith("hf-hub:") or not pretrained:
        return hub_host()
    repo, _, url = _tag_source(_pretrained_tag_config(model_name, pretrained))
    return hub_host() if repo else url_host(url)


def open_clip_cache(model_name: str, pretrained: str | None) -> Cache | None:
    if not _is_downloadable(model_name, pretrained):
        return None
    if model_name.startswith("hf-hub:") or not pretrained:
        return hub_cache()
    repo, _, _ = _tag_source(_pretrained_tag_config(model_name, pretrained))
    return hub_cache() if repo else Cache("open_clip's cache", _OPEN_CLIP_CACHE, "")


def locate_open_clip(model_name: str, pretrained: str | None) -> ModelLocation:
    """Where open_clip would load ``model_name`` with ``pretrained`` weights from."""
    model = open_clip_id(model_name, pretrained)
    if model_name.startswith("local-dir:"):
        folder = Path(model_name.removeprefix("local-dir:")).expanduser()
        present = (folder / _OPEN_CLIP_HF_CONFIG).is_file()
        return ModelLocation("embedding", model, str(folder), present, folder)
    if model_name.startswith("hf-hub:"):
        repo = model_name.removeprefix("hf-hub:")
        location = _hf_location(model, repo, _OPEN_CLIP_HF_FILES)
        if location.present and _hf_cached(repo, (_OPEN_CLIP_HF_CONFIG,)) is None:
            return ModelLocation("embedding", model, location.source, False, None)
        return location
    if not pretrained:
        return ModelLocation("embedding", model, "random weights (no pretrained)", True, None)
    if _is_weights_path(pretrained):
        path = Path(pretrained).expanduser()
        return ModelLocation("embedding", model, str(path), path.is_file(), path)
    hub_repo, files, url = _tag_source(_pretrained_tag_config(model_name, pretrained))
    if hub_repo:
        return _hf_location(model, hub_repo, files)
    path = _OPEN_CLIP_CACHE / os.path.basename(url)
    return ModelLocation("embedding", model, f"{path} (from {url})", path.is_file(), path)


def fetch_open_clip(model_name: str, pretrained: str | None) -> ModelLocation:
    """Download the weights (and for hf-hub models the config) into the standard cache."""
    location = locate_open_clip(model_name, pretrained)
    if location.present:
        return location
    if not _is_downloadable(model_name, pretrained):
        raise ModelNotFoundError(location.model, location.source, "no such file or folder")
    with _downloading(location.model, location.source):
        _download_open_clip(model_name, pretrained)
    return locate_open_clip(model_name, pretrained)


def _download_open_clip(model_name: str, pretrained: str | None) -> None:
    import open_clip
    from huggingface_hub import hf_hub_download

    if model_name.startswith("hf-hub:"):
        repo = model_name.removeprefix("hf-hub:")
        hf_hub_download(repo, _OPEN_CLIP_HF_CONFIG)
        open_clip.download_pretrained({"hf_hub": repo + "/"})
    elif pretrained:  # without a tag the model has random weights: nothing to download
        open_clip.download_pretrained(_pretrained_tag_config(model_name, pretrained))


def open_clip_arguments(model_name: str, pretrained: str | None) -> tuple[str, dict[str, Any]]:
    """``(model_name, kwargs)`` for ``open_clip.create_model_and_transforms`` that load from
    local files only, fetching first if needed and allowed (see ``downloads_allowed``).

    A tag is turned into its cached weights file plus the tag's own preprocessing and
    activation settings, so real models and test models take the same ``pretrained=<file>``
    path and no job asks the network once the cache is filled.
    """
    location = locate_open_clip(model_name, pretrained)
    if not location.present:
        if not downloads_allowed():
            raise ModelNotFoundError(location.model, location.source, "HF_HUB_OFFLINE is set")
        location = fetch_open_clip(model_name, pretrained)
    if model_name.startswith("local-dir:"):
        return model_name, {}
    if model_name.startswith("hf-hub:"):
        return f"local-dir:{location.local_path().parent}", {}  # the cached snapshot folder
    if not pretrained or _is_weights_path(pretrained):
        return model_name, {"pretrained": str(location.path) if pretrained else None}
    tag_config = _pretrained_tag_config(model_name, pretrained)
    return model_name, tag_arguments(tag_config, location.local_path())


def tag_arguments(tag_config: Mapping[str, Any], weights: Path) -> dict[str, Any]:
    """Keyword arguments that reproduce loading by tag from the tag's weights file."""
    return {
        "pretrained": str(weights),
        # open_clip 3 only warns when a tag trained with QuickGELU (OpenAI's) is loaded into
        # a GELU config; the embeddings would silently differ from the original model's.
        "force_quick_gelu": bool(tag_config.get("quick_gelu", False)),
        "image_mean": tag_config.get("mean"),
        "image_std": tag_config.get("std"),
        "image_interpolation": tag_config.get("interpolation"),
        "image_resize_mode": tag_config.get("resize_mode"),
    }


# --- Hugging Face transformers models (repo id or local folder) -----------------------------------
_HF_CONFIG = "config.json"
_HF_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def locate_huggingface(module: str, model: str) -> ModelLocation:
    """A transformers model given as a local folder or a Hugging Face repo id."""
    folder = Path(model).expanduser()
    if is_local(model):
        present = (folder / _HF_CONFIG).is_file() and any(
            (folder / name).is_file() for name in _HF_WEIGHTS
        )
        return ModelLocation(module, model, str(folder), present, folder)
    weights = _hf_cached(model, _HF_WEIGHTS)
    present = weights is not None and _hf_cached(model, (_HF_CONFIG,)) is not None
    source = f"the Hugging Face cache {_hf_cache_dir()} (repo {model})"
    return ModelLocation(module, model, source, present, weights.parent if weights else None)


def fetch_huggingface(module: str, model: str) -> ModelLocation:
    """Download a repo's config, processor files and weights into the Hugging Face cache."""
    location = locate_huggingface(module, model)
    if location.present:
        return location
    if is_local(model):
        raise ModelNotFoundError(model, location.source, "no config.json and weights there")
    from huggingface_hub import snapshot_download

    with _downloading(model, location.source):
        snapshot_download(
            model, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken"]
        )
    return locate_huggingface(module, model)


def hf_load_path(module: str, model: str) -> str:
    """What to give ``from_pretrained``: the folder or repo id, fetching first if allowed.

    Raises ModelNotFoundError (naming the model and ``imganalyzer models fetch``) when the
    model is not local and downloads are off.
    """
    location = locate_huggingface(module, model)
    if location.present:
        return model if not Path(model).expanduser().is_dir() else str(location.path)
    if not downloads_allowed():
        raise ModelNotFoundError(model, location.source, "HF_HUB_OFFLINE is set")
    fetch_huggingface(module, model)
    return model


# --- InsightFace model packs (a name under ~/.insightface/models, or a folder of .onnx files) ---
def insightface_root() -> Path:
    return Path(os.environ.get("INSIGHTFACE_HOME", "~/.insightface")).expanduser()


def locate_insightface(pack: str) -> ModelLocation:
    folder = Path(pack).expanduser()
    if not is_local(pack):
        folder = insightface_root() / "models" / pack
    present = folder.is_dir() and any(folder.glob("*.onnx"))
    return ModelLocation("faces", pack, str(folder), present, folder)


def fetch_insightface(pack: str) -> ModelLocation:
    """Download a named pack with InsightFace's own downloader (GitHub release zips)."""
    location = locate_insightface(pack)
    if location.present:
        return location
    if is_local(pack):
        raise ModelNotFoundError(pack, location.source, "no .onnx files there")
    from insightface.utils import storage

    with _downloading(pack, location.source):
        storage.ensure_available("models", pack, root=str(insightface_root()))
    return locate_insightface(pack)


# --- Remote APIs (the cloud module): nothing to download, a key to find -----------------------
REMOTE_MODELS = {"anthropic": "claude-sonnet-4-6", "openai": "gpt-4.1-mini"}
REMOTE_KEY_ENV = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}


def locate_remote(
    provider: str, model: str | None, api_key_env: str | None, base_url: str | None
) -> ModelLocation:
    """A remote model; "present" means its API key variable is set (the key is never shown)."""
    variable = api_key_env or REMOTE_KEY_ENV[provider]
    source = f"{base_url or f'{provider} API'}, key from ${variable}"
    model_id = f"{provider}:{model or 'default model'}"
    return ModelLocation("", model_id, source, bool(os.environ.get(variable)), None)


# --- Plain weights files (path or URL) -----------------------------------------------------------
def _url_cache_path(url: str) -> Path:
    return _torch_checkpoints() / unquote(os.path.basename(urlparse(url).path))


def _torch_checkpoints() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def locate_weights_file(module: str, weights: str) -> ModelLocation:
    """A weights file given as a local path or a URL (cached in torch hub's checkpoints/)."""
    if is_url(weights):
        path = _url_cache_path(weights)
        return ModelLocation(module, path.name, f"{path} (from {weights})", path.is_file(), path)
    path = Path(weights).expanduser()
    return ModelLocation(module, path.name, str(path), path.is_file(), path)


def weights_file(module: str, weights: str, download: bool | None = None) -> Path:
    """The local file of ``weights``, downloading a URL into the cache when allowed."""
    location = locate_weights_file(module, weights)
    path = location.local_path()
    if location.present:
        return path
    if not is_url(weights):
        raise ModelNotFoundError(location.model, location.source, "no such file")
    if not (downloads_allowed() if download is None else download):
        raise ModelNotFoundError(location.model, location.source, "HF_HUB_OFFLINE is set")
    import torch.hub

    with _downloading(location.model, location.source):
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(weights, str(path), progress=False)
    return path


def _insightface_cache(pack: str) -> Cache | None:
    if is_local(pack):
        return None
    folder = insightface_root() / "models"
    return Cache("InsightFace model packs", folder, "$INSIGHTFACE_HOME/models")


def _weights_file_cache(weights: str) -> Cache | None:
    if not is_url(weights):
        return None
    return Cache("torch hub checkpoints", _torch_checkpoints(), "$TORCH_HOME/hub/checkpoints")


# Module names in the locations are set by ``locate``.
KINDS: Mapping[str, WeightsKind] = {
    "open_clip": WeightsKind(locate_open_clip, fetch_open_clip, open_clip_host, open_clip_cache),
    "huggingface": WeightsKind(partial(locate_huggingface, ""), partial(fetch_huggingface, ""),
                               lambda model: None if is_local(model) else hub_host(),
                               lambda model: None if is_local(model) else hub_cache()),
    "insightface": WeightsKind(locate_insightface, fetch_insightface,  # GitHub release zips
                               lambda pack: None if is_local(pack) else "github.com",
                               _insightface_cache),
    "weights-file": WeightsKind(partial(locate_weights_file, ""),
                                partial(weights_file, "", download=True),
                                lambda file: url_host(file) if is_url(file) else None,
                                _weights_file_cache),
    "bundled": WeightsKind(  # inside a package's wheel (rapidocr's PP-OCR): always there
        lambda name: ModelLocation("", name, f"inside the {name} wheel", True, None),
        None, lambda name: None),
    "remote": WeightsKind(locate_remote, None, lambda *names: None,  # nothing to download
                          missing="its API key variable is not set",
                          hint="export the API key variable that {module}.api_key_env names"),
}  # fmt: skip
