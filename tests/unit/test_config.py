import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from imganalyzer.config import (
    ConfigError,
    Settings,
    default_config,
    load_config_file,
    load_schema,
    merge_config,
    validate_config,
)
from imganalyzer.runtime.registry import MODELS

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


# ------------------------------------------- the schema is the only place that holds bounds

# Every bound and choice that the modules used to check again in their own code (with
# drifted copies: cloud.max_long_edge 16.. in code vs 64.. in the schema) and the maxima
# added since, each with the key its message must name.
SCHEMA_BOUNDS = [
    ("cloud", "provider", "gemini"),
    ("cloud", "model", "claude sonnet"),  # "" is read as null: the provider's default
    ("cloud", "base_url", "localhost:8000"),
    ("cloud", "api_key_env", "not a name"),
    ("cloud", "concurrency", 0),
    ("cloud", "concurrency", 10_000),
    ("cloud", "requests_per_minute", 0),
    ("cloud", "requests_per_minute", 1e9),
    ("cloud", "max_retries", -1),
    ("cloud", "max_retries", 1000),
    ("cloud", "timeout_s", 0),
    ("cloud", "timeout_s", 86_400),
    ("cloud", "max_images_per_run", -1),
    ("cloud", "max_images_per_run", 10**12),
    ("cloud", "max_cost_usd", -1),
    ("cloud", "max_cost_usd", float("nan")),
    ("cloud", "max_cost_usd", float("inf")),
    ("cloud", "max_cost_usd", 1e12),
    ("cloud", "cost_per_image_usd", -0.1),
    ("cloud", "input_usd_per_mtok", -1),
    ("cloud", "output_usd_per_mtok", float("nan")),
    ("cloud", "max_long_edge", 32),
    ("cloud", "max_long_edge", 4000),
    ("cloud", "jpeg_quality", 0),
    ("cloud", "jpeg_quality", 101),
    ("cloud", "max_output_tokens", 8),
    ("cloud", "json_mode", "perhaps"),
    ("cloud", "prompt", "   "),
    ("cloud", "backoff_base_s", -1),
    ("cloud", "backoff_max_s", 1e9),
    ("objects", "prompts", []),
    ("objects", "prompts", "person"),
    ("objects", "prompts", ["person", "  "]),
    ("objects", "prompts", ["person", "a cat. a dog"]),
    ("objects", "prompts", ["Person", "person "]),
    ("objects", "prompts", [f"thing {i}" for i in range(300)]),
    ("objects", "box_threshold", 0),
    ("objects", "box_threshold", 1),
    ("objects", "text_threshold", 1.5),
    ("objects", "text_threshold", -0.1),
    ("objects", "max_detections", 0),
    ("objects", "batch_size", 0),
    ("objects", "input_short_edge", [800, 480]),  # not [low, high]
    ("objects", "input_short_edge", [16, 800]),
    ("objects", "input_short_edge", [480]),
    ("objects", "input_multiple", 0),
    ("objects", "compile", "perhaps"),
    ("captions", "questions", {"": "What is this?"}),
    ("captions", "questions", {"scene": ""}),
    ("captions", "questions", {"scene": "   "}),
    ("captions", "questions", {"scene": 3}),
    ("captions", "questions", ["What?"]),
    ("captions", "questions", {f"q{i}": "Why?" for i in range(40)}),
    ("captions", "max_new_tokens", 0),
    ("captions", "max_new_tokens", 100_000),
    ("captions", "caption_prompt", 5),
    ("captions", "max_answer_tokens", 0),
    ("captions", "separate_answers", 2),
    ("embedding", "decode_on_device", 1),
    ("ocr", "backend", "tesseract"),
    ("ocr", "max_regions", 0),
    ("ocr", "max_side", 10**6),
    ("faces", "min_face_size", 10**6),
    ("faces", "det_size", 8),
    ("people", "min_cluster_size", 10**9),
    ("xmp", "mode", "inside"),
    ("xmp", "naming", "picasa"),
    ("xmp", "rating_from_aesthetic", [5, 4, 3, 2, 1]),
    ("xmp", "rating_from_aesthetic", [1, 2, 3]),
    ("aesthetic", "batch_size", 0),
    ("embedding", "batch_size", 10**9),
    (None, "device", "gpu"),
    (None, "max_pixels", 10**12),
    (None, "threads_per_decode_job", 100_000),
]


@pytest.mark.parametrize(("section", "key", "value"), SCHEMA_BOUNDS)
def test_each_bound_is_the_schemas_and_its_message_names_the_key(
    tmp_path: Path, section: str | None, key: str, value
) -> None:
    override = {key: value} if section is None else {section: {key: value}}
    with pytest.raises(ConfigError) as raised:
        validate_config(base_config(tmp_path) | override)
    message = str(raised.value)
    name = key if section is None else f"{section}.{key}"
    assert f"config key '{name}" in message and "\n" not in message


def test_a_bad_pattern_says_what_is_wanted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        validate_config(base_config(tmp_path) | {"cloud": {"base_url": "localhost:8000"}})
    assert (
        str(raised.value) == "config key 'cloud.base_url': 'localhost:8000' is not an http(s) URL"
    )


def test_a_blank_text_is_named_as_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        validate_config(base_config(tmp_path) | {"cloud": {"prompt": "   "}})
    assert str(raised.value) == "config key 'cloud.prompt': '   ' is not a request text (not blank)"


def test_a_number_must_be_finite(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'cloud\.timeout_s': inf is not a finite number"):
        validate_config(base_config(tmp_path) | {"cloud": {"timeout_s": float("inf")}})


def settings_types() -> list[type[Settings]]:
    """Every settings class of the package (imported with the modules that define them)."""
    for spec in MODELS.values():
        spec.settings_type()
    found, todo = [], list(Settings.__subclasses__())
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo += cls.__subclasses__()
    return sorted(found, key=lambda cls: cls.section)


def test_each_settings_type_holds_its_whole_section_and_no_default_of_its_own() -> None:
    """The schema is the one place of every default: a settings field has none, and a
    settings type reads every key of its section (and top-level keys only besides)."""
    config = default_config()
    types = settings_types()
    assert {cls.section for cls in types} >= set(MODELS)
    for cls in types:
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(config[cls.section]) <= names, cls.__name__
        assert names - set(config[cls.section]) <= set(config), cls.__name__
        for field in dataclasses.fields(cls):
            assert field.default is dataclasses.MISSING, f"{cls.__name__}.{field.name}"
            assert field.default_factory is dataclasses.MISSING, f"{cls.__name__}.{field.name}"
        settings = cls.from_config(config)
        for name in names:
            expected = config[cls.section].get(name, config.get(name))
            value = getattr(settings, name)
            assert (list(value) if isinstance(value, tuple) else value) == expected, name


def test_settings_defaults_are_the_schemas_with_changes() -> None:
    from imganalyzer.modules.objects import ObjectSettings

    settings = ObjectSettings.defaults(box_threshold=0.5)
    assert settings.box_threshold == 0.5 and settings.text_threshold == 0.25
    assert settings.prompts[:2] == ("person", "face") and settings.device == "auto"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.model = "other"  # type: ignore[misc]


def test_settings_from_a_config_without_the_key_name_it() -> None:
    from imganalyzer.modules.ocr import OcrSettings

    with pytest.raises(ConfigError, match="OcrSettings: the config has no key ocr.library"):
        OcrSettings.from_config({"ocr": default_config()["ocr"], "device": "cpu"})


def test_every_provider_has_a_default_model_and_key_variable() -> None:
    """Each provider the schema allows has a default model and key variable in the code."""
    from imganalyzer.runtime import weights

    providers = set(load_schema()["properties"]["cloud"]["properties"]["provider"]["enum"])
    assert set(weights.REMOTE_MODELS) == set(weights.REMOTE_KEY_ENV) == providers


def test_repository_config_holds_the_schema_defaults() -> None:
    """config.yaml documents the defaults; only the library and the modules differ."""
    shipped = yaml.safe_load((REPO / "config.yaml").read_text())
    defaults = default_config()
    for key, value in shipped.items():
        if key in ("library", "modules"):
            continue
        if isinstance(value, dict):
            assert value == {k: defaults[key][k] for k in value}, key
        else:
            assert value == defaults[key], key


def _raise_messages(path: Path) -> list[tuple[int, str]]:
    """(line, the literal text of its message) of every ``raise`` in a Python file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            parts = ast.walk(node.exc)
            text = "".join(
                p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str)
            )
            found.append((node.lineno, text))
    return found


# The config errors only the code can find, each for a reason the schema cannot know.
CODE_CHECKS = {
    ("modules/cloud.py", "cloud: the environment variable"),  # the API key is not set
    ("modules/faces.py", "config key 'device' is 'cuda', but onnxruntime"),  # this machine
    ("runtime/batched.py", "config key 'device' is , but no such device"),  # this machine
    ("modules/objects.py", "objects.prompts:  tokens, but"),  # the model's text length
    ("runtime/registry.py", "config key 'embedding': the aesthetic"),  # called by config.py
    ("runtime/weights.py", "config key 'embedding.model'"),  # open_clip's own list
    ("runtime/weights.py", "config key 'embedding.pretrained'"),  # open_clip's own list
    ("steps/xmp.py", "xmp.dir: the mirror root"),  # no results folder given
    ("steps/xmp.py", "xmp.dir  lies inside the library"),  # the file system
}


def _names_a_config_key() -> re.Pattern:
    """'config key ...', a section's key ('cloud.concurrency') or 'max_regions must'."""
    schema = load_schema()["properties"]
    sections = [s for s, sub in schema.items() if "properties" in sub]
    keys = {k for s in sections for k in schema[s]["properties"]} | set(schema)
    return re.compile(rf"config key|\b({'|'.join(sections)})\.[a-z_]+|\b({'|'.join(keys)}) must\b")


def test_no_module_checks_a_config_bound_of_its_own() -> None:
    """A raise whose message names a config key outside config.py is a second copy of a
    bound (or choice), unless it is one of the checks listed above."""
    names_a_key = _names_a_config_key()
    package = REPO / "imganalyzer"
    found = set()
    for path in sorted(package.rglob("*.py")):
        if path == package / "config.py":
            continue
        for line, text in _raise_messages(path):
            if names_a_key.search(text):
                found.add((str(path.relative_to(package)), line, text))
    unexplained = [
        f"{where}:{line}: {text}"
        for where, line, text in sorted(found)
        if not any(where == path and text.startswith(start) for path, start in CODE_CHECKS)
    ]
    assert not unexplained, "\n".join(unexplained)
    assert len(found) == len(CODE_CHECKS)  # each listed check still exists


def test_the_bound_finder_sees_the_checks_that_were_removed(tmp_path: Path) -> None:
    removed = tmp_path / "removed.py"
    removed.write_text(
        "def f(n, k, q):\n"
        "    if n < 1:\n"
        "        raise ValueError(f'max_regions must be positive, got {n}')\n"
        "    if q:\n"
        "        raise ValueError(f'captions.questions: key {q!r} is not a non-empty string')\n"
        "    if k:\n"
        "        raise ValueError(f'batch_size must be auto or a positive integer, got {k}')\n"
        "    raise ConfigError(f\"config key 'cloud.{k}': {n!r} must be >= 1\")\n"
    )
    names_a_key = _names_a_config_key()
    found = sorted(line for line, text in _raise_messages(removed) if names_a_key.search(text))
    assert found == [3, 5, 7, 8]
    assert not names_a_key.search("expected an (H, W, 3) uint8 array")


def test_overrides_of_a_section_keep_its_other_keys(tmp_path: Path) -> None:
    """--config cloud: {concurrency: 8} over a run's config keeps the run's cloud model;
    free-form maps (tiers) and lists are replaced whole."""
    run = {"cloud": {"model": "m", "concurrency": 2}, "tiers": {"detect": 1024, "clip": 384}}
    merge_config(run, {"cloud": {"concurrency": 8}, "tiers": {"detect": 512}})
    assert run["cloud"] == {"model": "m", "concurrency": 8}
    assert run["tiers"] == {"detect": 512}
    path = tmp_path / "c.yaml"
    path.write_text("- not\n- a mapping\n")
    with pytest.raises(ConfigError, match="not a mapping"):
        load_config_file(path)


def test_an_xmp_mirror_inside_the_library_fails_at_start(tmp_path: Path) -> None:
    xmp = {"enabled": True, "mode": "mirror", "dir": str(tmp_path / "xmp")}
    with pytest.raises(ConfigError, match=r"^config key 'xmp\.dir': .* inside the library"):
        validate_config(base_config(tmp_path) | {"xmp": xmp})
    inside_results = xmp | {"dir": str(tmp_path / "results" / "xmp")}
    validate_config(
        base_config(tmp_path) | {"results": str(tmp_path / "results"), "xmp": inside_results}
    )
    validate_config(base_config(tmp_path) | {"xmp": xmp | {"dir": str(tmp_path.parent / "x")}})
    validate_config(base_config(tmp_path) | {"xmp": xmp | {"enabled": False}})
