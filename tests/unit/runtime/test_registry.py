"""The model registry, where configured models load from, fetching, and the models CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from imganalyzer.cli import main as cli
from imganalyzer.config import default_config, validate_config
from imganalyzer.errors import ConfigError
from imganalyzer.modules.embedding import ClipEmbedder, EmbeddingSettings
from imganalyzer.runtime.registry import (
    FETCH_COMMAND,
    MODELS,
    ModelNotFoundError,
    QuietSettings,
    configured_modules,
    format_table,
)
from imganalyzer.runtime.weights import fetch, locate, locate_open_clip, open_clip_arguments
from tests.unit.conftest import TINY_CLIP_CONFIG

OPENAI_L14_REPO = "timm/vit_large_patch14_clip_224.openai"


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache, and no network: jobs must not try to download."""
    from huggingface_hub import constants

    cache = tmp_path / "hf"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.fixture
def torch_hub(tmp_path: Path):
    previous = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "torch_hub"))
    yield tmp_path / "torch_hub"
    torch.hub.set_dir(previous)


def cache_file(cache: Path, repo: str, filename: str, source: Path | None = None) -> Path:
    """Put a file into a Hugging Face cache the way huggingface_hub lays it out."""
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text("0123abcd")
    path = folder / "snapshots" / "0123abcd" / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    if source:
        shutil.copy(source, path)
    else:
        path.write_bytes(b"weights")
    return path


def configured(**sections) -> dict:
    """A validated config: the schema's defaults, with ``sections``."""
    return validate_config({"library": "."} | sections, check_paths=False)


def embedder(model: str, pretrained: str | None) -> ClipEmbedder:
    settings = EmbeddingSettings.defaults(model=model, pretrained=pretrained, device="cpu")
    return ClipEmbedder(settings)


def test_configured_modules_are_the_enabled_model_modules_in_registry_order() -> None:
    config = {"modules": ["metadata", "aesthetic", "embedding"]}
    assert configured_modules(config) == ["embedding", "aesthetic"]
    assert list(MODELS)[:2] == ["embedding", "aesthetic"]


def test_an_uncached_tag_is_located_in_the_hf_cache_and_not_present(hf_cache: Path) -> None:
    location = locate("embedding", configured())
    assert location.model == "ViT-L-14:openai" and not location.present
    assert str(hf_cache) in location.source and OPENAI_L14_REPO in location.source


def test_a_cached_tag_loads_from_its_file_with_the_tags_own_settings(hf_cache: Path) -> None:
    weights = cache_file(hf_cache, OPENAI_L14_REPO, "open_clip_model.safetensors")
    assert locate_open_clip("ViT-L-14", "openai").path == weights
    name, kwargs = open_clip_arguments("ViT-L-14", "openai")
    assert name == "ViT-L-14" and kwargs["pretrained"] == str(weights)
    assert kwargs["force_quick_gelu"] is True  # OpenAI's weights were trained with QuickGELU
    assert kwargs["image_interpolation"] == "bicubic" and len(kwargs["image_mean"]) == 3


def test_a_missing_tag_offline_says_which_model_where_and_how_to_fetch(hf_cache: Path) -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        embedder("ViT-L-14", "openai").load()
    message = str(caught.value)
    assert "ViT-L-14:openai" in message and str(hf_cache) in message
    assert OPENAI_L14_REPO in message and FETCH_COMMAND in message


def test_unknown_models_and_tags_name_the_config_key(hf_cache: Path) -> None:
    with pytest.raises(ConfigError, match="'embedding.pretrained'.*tags: .*laion2b"):
        locate_open_clip("ViT-L-14", "no_such_tag")
    with pytest.raises(ConfigError, match="'embedding.model'"):
        locate_open_clip("ViT-Q-99", "openai")


def test_an_hf_hub_model_loads_from_the_cache_as_a_local_folder(
    hf_cache: Path, tiny_clip_weights: Path
) -> None:
    repo = "someone/tiny-clip"
    config = {"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {"interpolation": "bicubic"}}
    config_file = hf_cache / "config.json"
    config_file.write_text(json.dumps(config))
    cache_file(hf_cache, repo, "open_clip_config.json", config_file)
    assert not locate_open_clip(f"hf-hub:{repo}", None).present  # weights still missing
    cache_file(hf_cache, repo, "open_clip_pytorch_model.bin", tiny_clip_weights)
    model = embedder(f"hf-hub:{repo}", None)
    model.load()
    assert model.dim == TINY_CLIP_CONFIG["embed_dim"]


def test_fetch_downloads_a_weights_url_into_the_torch_hub_cache(
    tmp_path: Path, torch_hub: Path
) -> None:
    source = tmp_path / "head+v2.pth"
    source.write_bytes(b"state dict")
    config = configured(aesthetic={"weights": source.as_uri().replace("+", "%2B")})
    assert not locate("aesthetic", config).present
    location = fetch("aesthetic", config)
    assert location.present and location.path == torch_hub / "checkpoints" / "head+v2.pth"
    assert location.path.read_bytes() == b"state dict"


def test_a_weights_url_is_not_downloaded_offline(torch_hub: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from imganalyzer.modules.aesthetic import AestheticScorer, AestheticSettings

    with pytest.raises(ModelNotFoundError, match="sac\\+logos\\+ava1-l14-linearMSE.pth"):
        AestheticScorer(AestheticSettings.defaults()).load()


def test_table_lists_module_model_presence_and_source(tmp_path: Path, torch_hub) -> None:
    weights = tmp_path / "head.pth"
    weights.write_bytes(b"x")
    config = configured(aesthetic={"weights": str(weights)})
    table = format_table([locate("aesthetic", config)]).splitlines()
    assert table[0].split() == ["module", "model", "present", "source"]
    assert table[1].split() == ["aesthetic", "head.pth", "yes", str(weights)]


def test_models_list_without_model_modules(tmp_path: Path, capsys) -> None:
    library = tmp_path / "library"
    library.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"library": str(library), "modules": ["metadata"]}))
    assert cli.main(["models", "list", "--config", str(config)]) == 0
    assert "no enabled module loads a model" in capsys.readouterr().out
    assert cli.main(["models", "fetch", "--config", str(config)]) == 0


def test_a_missing_local_folder_is_reported_not_downloaded(tmp_path: Path) -> None:
    folder = tmp_path / "no_model"
    with pytest.raises(ModelNotFoundError, match=f"local-dir:{folder} not found: looked in"):
        embedder(f"local-dir:{folder}", "openai").load()


def test_transformers_models_are_found_in_a_folder_or_the_hub_cache(
    tmp_path: Path, hf_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imganalyzer.runtime.weights import hf_load_path, locate_huggingface

    folder = tmp_path / "blip2"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert not locate_huggingface("captions", str(folder)).present  # no weights yet
    (folder / "model.safetensors").write_bytes(b"")
    assert locate_huggingface("captions", str(folder)).present
    assert hf_load_path("captions", str(folder)) == str(folder)

    config = configured(modules=["objects"], objects={"model": "org/not-cached"})
    location = locate("objects", config)
    assert not location.present and "org/not-cached" in location.source
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="org/not-cached.*models fetch"):
        hf_load_path("objects", "org/not-cached")


def test_face_packs_are_a_named_pack_or_a_folder_of_onnx_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSIGHTFACE_HOME", str(tmp_path / "home"))
    named = locate("faces", configured(faces={"pack": "buffalo_l"}))
    assert not named.present and named.path == tmp_path / "home" / "models" / "buffalo_l"
    folder = tmp_path / "mine"
    folder.mkdir()
    assert not locate("faces", configured(faces={"pack": str(folder)})).present
    (folder / "det.onnx").write_bytes(b"")
    assert locate("faces", configured(faces={"pack": str(folder)})).present


def test_the_cloud_model_is_present_when_its_key_variable_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cloud = configured(cloud={"provider": "openai", "api_key_env": "MY_KEY"})
    monkeypatch.delenv("MY_KEY", raising=False)
    assert not locate("cloud", cloud).present
    monkeypatch.setenv("MY_KEY", "secret")
    location = locate("cloud", cloud)
    assert location.present and "$MY_KEY" in location.source and "secret" not in str(location)


def names_compared(source: str) -> list[str]:
    """The model modules' names that ``source`` compares anything with."""
    import ast

    return [
        operand.value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Compare)
        for operand in (node.left, *node.comparators)
        if isinstance(operand, ast.Constant) and operand.value in MODELS
    ]


def test_the_runtime_never_branches_on_a_model_modules_name() -> None:
    """What differs between model modules lives in their registry entries: no comparison
    with a module's name (``module == "ocr"``) anywhere in ``imganalyzer/runtime``."""
    runtime = Path(__file__).resolve().parents[3] / "imganalyzer" / "runtime"
    found = {path.name: names_compared(path.read_text()) for path in runtime.glob("*.py")}
    assert not {name: names for name, names in found.items() if names}
    assert names_compared('if module == "ocr" or "faces" != spec.module:\n    pass\n') == [
        "ocr",
        "faces",
    ]


# The settings keys of each model rule's params at the first release of the registry
# (86ba94a): an upgrade that changed them would re-run every job of the library.
RELEASED_KEYS = {
    "embedding": {"model", "pretrained", "batch_size"},
    "objects": {"model", "prompts", "box_threshold", "text_threshold", "text_labels",
                "person_labels", "max_detections", "batch_size"},
    "captions": {"model", "questions", "caption_prompt", "max_new_tokens", "batch_size"},
}  # fmt: skip


def compared(params: dict) -> dict:
    """The params Snakemake's params trigger compares (it leaves QuietSettings out)."""
    return {k: v for k, v in params.items() if not isinstance(v, QuietSettings)}


def test_each_rule_records_its_settings_as_before_and_its_job_rebuilds_them() -> None:
    """At the schema's defaults the compared params hold the settings each module's rule
    always did (settings added since are passed quietly), and the job's settings built from
    the params are the ones the config gives."""
    config = configured(modules=list(MODELS))
    defaults = default_config()
    objects = compared(MODELS["objects"].rule_params(config, defaults))
    assert set(objects) == {"settings", "device"}
    assert set(objects["settings"]) == RELEASED_KEYS["objects"]
    captions = compared(MODELS["captions"].rule_params(config, defaults))
    assert set(captions["settings"]) == RELEASED_KEYS["captions"]
    embedding = compared(MODELS["embedding"].rule_params(config, defaults))
    assert set(embedding) == RELEASED_KEYS["embedding"] | {"device"}
    assert set(compared(MODELS["ocr"].rule_params(config, defaults))) == {
        "settings", "library", "max_pixels", "device"
    }  # fmt: skip
    for module, spec in MODELS.items():
        job = {"results": "r", "shards": ["s"], "retry": "", "version": spec.version, "rerun": 0}
        settings = spec.settings_type()
        rebuilt = settings.from_config(spec.config_of(spec.rule_params(config, defaults) | job))
        assert rebuilt == settings.from_config(config), module


def test_a_later_setting_is_compared_once_set_and_a_speed_setting_never() -> None:
    defaults = default_config()
    changed = configured(
        objects={"input_short_edge": [800, 800], "compile": True},
        captions={"static_cache": True, "max_answer_tokens": 3},
    )
    objects = MODELS["objects"].rule_params(changed, defaults)
    assert objects["settings"]["input_short_edge"] == [800, 800]  # re-runs objects
    assert objects["quiet"] == {"compile": True, "input_multiple": 32}
    captions = MODELS["captions"].rule_params(changed, defaults)
    assert captions["settings"]["max_answer_tokens"] == 3
    assert captions["quiet"] == {"static_cache": True, "separate_answers": False}
    assert isinstance(captions["quiet"], QuietSettings)
    # the value Snakemake's params trigger leaves out: not a builtin it can represent
    builtins = (type(None), int, float, bool, str, list, tuple, dict, set, frozenset, bytes)
    assert not isinstance(captions["quiet"], builtins)
