from pathlib import Path

import pytest
import yaml

from imganalyzer.config import ConfigError, load_config_file, validate_config

REPO = Path(__file__).resolve().parents[2]


def base_config(tmp_path: Path) -> dict:
    return {"library": str(tmp_path)}


def test_defaults_are_filled(tmp_path: Path) -> None:
    config = validate_config(base_config(tmp_path))
    assert config["shard_size"] == 1000
    assert config["tiers"] == {"detect": 1024, "clip": 384}
    assert config["modules"] == ["metadata", "technical", "embedding", "aesthetic"]
    assert config["embedding"]["model"] == "ViT-L-14" and config["device"] == "auto"


def test_aesthetic_with_another_embedding_fails_at_start(tmp_path: Path) -> None:
    config = base_config(tmp_path) | {"embedding": {"model": "ViT-B-32"}}
    with pytest.raises(ConfigError, match="config key 'embedding'.*ViT-L/14"):
        validate_config(config)
    validate_config(base_config(tmp_path) | config | {"modules": ["embedding"]})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("shard_size", 0, "config key 'shard_size'"),
        ("shard_size", "many", "config key 'shard_size'"),
        ("jpeg_quality", 101, "config key 'jpeg_quality'"),
        ("modules", ["metadata", "telepathy"], "config key 'modules.1'"),
        ("tiers", {"detect": 10}, "config key 'tiers.detect'"),
        ("tier_compression", "gif", "config key 'tier_compression'"),
    ],
)
def test_bad_values_fail_naming_the_key(tmp_path: Path, key, value, expected) -> None:
    config = base_config(tmp_path) | {key: value}
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        validate_config(config)


def test_misspelt_key_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shard_sise"):
        validate_config(base_config(tmp_path) | {"shard_sise": 10})


def test_missing_library_fails_naming_key_and_example_command(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'library'.*imganalyzer example"):
        validate_config({"library": str(tmp_path / "example/library")})


def test_repository_config_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    text = (REPO / "config.yaml").read_text()
    config = yaml.safe_load(text)
    config["library"] = str(tmp_path)
    validate_config(config)
    lines = text.splitlines()
    for key in config:
        index = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
        assert lines[index - 1].startswith("#"), f"config.yaml key {key} has no comment"


def test_workflow_schema_is_the_package_schema() -> None:
    linked = REPO / "workflow/schemas/config.schema.yaml"
    packaged = REPO / "imganalyzer/schemas/config.schema.yaml"
    assert linked.read_text() == packaged.read_text()


def test_load_config_file_applies_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("library: /does/not/exist\nshard_size: 5\n")
    config = load_config_file(path, {"library": str(tmp_path)})
    assert config["shard_size"] == 5 and config["library"] == str(tmp_path)


def test_schema_defaults_of_the_model_modules_match_their_code() -> None:
    from imganalyzer.modules import captions, objects

    config = validate_config({"library": "x"}, check_paths=False)
    assert config["objects"]["prompts"] == list(objects.DEFAULT_PROMPTS)
    assert config["objects"]["text_labels"] == list(objects.DEFAULT_TEXT_LABELS)
    assert config["objects"]["person_labels"] == list(objects.DEFAULT_PERSON_LABELS)
    assert config["objects"]["box_threshold"] == objects.DEFAULT_BOX_THRESHOLD
    assert config["captions"]["questions"] == dict(captions.DEFAULT_QUESTIONS)
    assert config["captions"]["caption_prompt"] == captions.CAPTION_PROMPT


def test_command_line_overrides_of_nested_keys_are_parsed_like_the_file(tmp_path: Path) -> None:
    """snakemake --config parses nested values with YAML's BaseLoader: every leaf a string."""
    config = base_config(tmp_path) | {
        "tiers": {"detect": "2048", "clip": 384},
        "embedding": {"batch_size": "64"},
        "xmp": {"enabled": "true", "rating_from_aesthetic": ["3", "4", "5", "6", "7"]},
        "cloud": {"max_cost_usd": "2.5", "model": "claude-x"},
        "captions": {"questions": {"scene": "123"}},  # a string where strings are wanted
    }
    validate_config(config)
    assert config["tiers"] == {"detect": 2048, "clip": 384}
    assert config["embedding"]["batch_size"] == 64
    assert config["xmp"]["enabled"] is True and config["xmp"]["rating_from_aesthetic"][0] == 3
    assert config["cloud"]["max_cost_usd"] == 2.5 and config["cloud"]["model"] == "claude-x"
    assert config["captions"]["questions"] == {"scene": "123"}


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            {"tiers": {"detect": "99999"}},
            "'tiers.detect': 99999 is greater than the maximum of 4096",
        ),
        ({"shard_size": "0"}, "'shard_size': 0 is less than the minimum of 1"),
        (
            {"embedding": {"batch_size": "0"}},
            "'embedding.batch_size': 0 is less than the minimum of 1",
        ),
        ({"shard_sise": 10}, "unknown key 'shard_sise' (did you mean 'shard_size'?)"),
        ({"cloud": {"modle": "x"}}, "'cloud': unknown key 'modle' (did you mean 'model'?)"),
        ({"modules": ["metadata", "techincal"]}, "(did you mean 'technical'?)"),
        ({"device": "gpu"}, "'device': 'gpu' is not one of"),
    ],
)
def test_override_errors_give_the_bound_or_the_likely_key(
    tmp_path: Path, override: dict, expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        validate_config(base_config(tmp_path) | override)
    assert expected in str(raised.value)
