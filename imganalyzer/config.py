"""Configuration: validated against the JSON schema, defaults filled, errors name the key."""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Self

import jsonschema
import yaml
from jsonschema.protocols import Validator

from imganalyzer.errors import ConfigError
from imganalyzer.files import atomic_write_text
from imganalyzer.layout import Layout
from imganalyzer.runtime.registry import MODELS, check_aesthetic_compatible


def load_schema() -> dict[str, Any]:
    """The schema file, with every registered model module (``runtime.registry.MODELS``)
    among the ``modules`` and a config section for each: the file's, or its entry's."""
    text = resources.files("imganalyzer").joinpath("schemas/config.schema.yaml").read_text()
    # libyaml's loader where PyYAML has it: every run and command reads the schema, and the
    # pure-Python loader takes ~0.1 s for it.
    schema = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    properties, names = schema["properties"], schema["properties"]["modules"]["items"]["enum"]
    names += [module for module in MODELS if module not in names]
    for module, spec in MODELS.items():
        section = {"type": "object", "additionalProperties": False, "default": {}}
        properties.setdefault(module, section | {"properties": dict(spec.schema or {})})
    return schema


def _with_defaults(validator_class: type[Validator]) -> type[Validator]:
    """A validator class that also fills in ``default:`` values of absent properties."""
    check_properties = validator_class.VALIDATORS["properties"]

    def properties(
        validator: Validator, props: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
    ) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for name, subschema in props.items():
                if "default" in subschema:
                    instance.setdefault(name, copy.deepcopy(subschema["default"]))
        yield from check_properties(validator, props, instance, schema)

    # nan and inf are not numbers here: nan passes every bound, inf breaks every budget
    types = validator_class.TYPE_CHECKER.redefine("number", _is_finite_number)
    return jsonschema.validators.extend(
        validator_class, {"properties": properties}, type_checker=types
    )


def _is_finite_number(_checker: Any, value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def validate_config(config: dict[str, Any], check_paths: bool = True) -> dict[str, Any]:
    """Validate ``config`` in place (filling defaults) and return it.

    Raises ConfigError naming the offending key, e.g. ``config key 'shard_size': 0 is
    less than the minimum of 1``.
    """
    schema = load_schema()
    coerce_command_line_values(config, schema)
    errors = sorted(_Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        raise ConfigError("; ".join(_describe(e) for e in errors))
    _check_what_the_schema_cannot_say(config)
    if check_paths:
        _check_library(config["library"])
        _check_xmp_mirror(config)
    return config


def _check_what_the_schema_cannot_say(config: dict[str, Any]) -> None:
    """The rules that relate values to each other (or to the model registry)."""
    modules = config["modules"]
    for module in (m for m in modules if m in MODELS):
        for needed in (m for m in MODELS[module].needs if m not in modules):
            raise ConfigError(
                f"config key 'modules': {module} reads the results of {needed}; add {needed} "
                f"to modules (or remove {module})"
            )
    if "aesthetic" in config["modules"]:
        embedding = config["embedding"]
        check_aesthetic_compatible(
            embedding["model"], embedding["pretrained"], config["aesthetic"]["weights"]
        )
    # GroundingDINO reads prompts lower-cased, single-spaced: "Dog" and "dog " are one prompt
    labels = [" ".join(prompt.lower().split()) for prompt in config["objects"]["prompts"]]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ConfigError(
            f"config key 'objects.prompts': repeated prompts {repeated} (case and spacing "
            "are ignored)"
        )
    low, high = config["objects"]["input_short_edge"]
    if low > high:
        raise ConfigError(
            f"config key 'objects.input_short_edge': [{low}, {high}] is not [low, high]"
        )
    thresholds = config["xmp"]["rating_from_aesthetic"]
    if thresholds is not None and list(thresholds) != sorted(thresholds):
        raise ConfigError(
            f"config key 'xmp.rating_from_aesthetic': {thresholds} are not ascending (the "
            "scores for 1, 2, 3, 4 and 5 stars)"
        )


def merge_config(
    base: dict[str, Any], overrides: dict[str, Any], schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``base`` with the keys of ``overrides`` on top, in place. A section with fixed keys
    (``cloud: {concurrency: 8}``) is merged key by key, so the other keys of the run stay;
    any other value (a list, ``tiers``, ``captions.questions``) replaces the old one."""
    properties = (schema or load_schema()).get("properties", {})
    for key, value in overrides.items():
        sub = properties.get(key, {})
        if isinstance(value, dict) and isinstance(base.get(key), dict) and "properties" in sub:
            merge_config(base[key], value, sub)
        else:
            base[key] = value
    return base


def default_config() -> dict[str, Any]:
    """Every key at the schema's default (the library is a placeholder): for benchmarks and
    tests that run a part at the settings a run would use."""
    return validate_config({"library": "."}, check_paths=False)


@dataclass(frozen=True)
class Settings:
    """Base of the typed settings: one frozen dataclass per config section, built from a
    validated config: a field is the section's key of its name, else the top-level key
    (``device``). No field has a default: the schema holds them all (``defaults``)."""

    section: ClassVar[str]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        own = config.get(cls.section) or {}
        values = {}
        for name in (f.name for f in fields(cls)):
            if name not in own and name not in config:
                raise ConfigError(f"{cls.__name__}: the config has no key {cls.section}.{name}")
            value = own[name] if name in own else config[name]
            values[name] = tuple(value) if isinstance(value, list) else copy.copy(value)
        return cls(**values)

    @classmethod
    def defaults(cls, **changes: Any) -> Self:
        """The schema's defaults with ``changes`` (for tests and benchmarks)."""
        return replace(cls.from_config(default_config()), **changes)


def coerce_command_line_values(value: Any, schema: dict[str, Any]) -> Any:
    """Parse strings that the schema does not want as strings, in place, as YAML.

    ``snakemake --config tiers='{detect: 2048}'`` parses the nested value with YAML's
    BaseLoader, which keeps every scalar a string ('2048'); such a value is read again as
    YAML, so that it is validated like the same value in config.yaml. Returns the value.
    """
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                value[key] = coerce_command_line_values(item, sub)
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            value[:] = [coerce_command_line_values(item, items) for item in value]
        return value
    if isinstance(value, str) and not _Validator(schema).is_valid(value):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if not isinstance(parsed, str) and _Validator(schema).is_valid(parsed):
            return parsed
        if isinstance(parsed, int | float | bool):
            return parsed  # validated next: the message then gives the bound, not the type
    return value


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path)
    where = f"config key '{key}'" if key else "config"
    # a validator sets these on every error it yields (they are unset only on hand-made ones)
    instance: Any = error.instance
    bound: Any = error.validator_value
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties":
        return f"{where}: {_unknown_keys(error)}"
    if error.validator == "required":
        return f"config: {error.message}"
    if error.validator in ("maxItems", "maxProperties", "minItems", "minProperties"):
        than = (
            "more than the maximum"
            if error.validator.startswith("max")
            else "fewer than the minimum"
        )
        return f"{where}: {len(instance)} entries, {than} of {bound}"
    if error.validator == "pattern" and "description" in schema:
        return f"{where}: {instance!r} is not {schema['description']}"
    if error.validator == "type" and _is_non_finite(instance):
        return f"{where}: {instance!r} is not a finite number"
    if error.validator == "enum" and isinstance(instance, str):
        return f"{where}: {error.message}{_did_you_mean(instance, bound)}"
    if error.validator in ("oneOf", "anyOf") and error.context:
        # e.g. batch_size: "auto" or an integer; say the bound the number broke, not the type
        reasons = [e for e in error.context if e.validator not in ("type", "enum")]
        reasons = reasons or list(error.context)
        messages = list(dict.fromkeys(e.message for e in reasons))
        return f"{where}: {' or '.join(messages)}"
    return f"{where}: {error.message}"


def _is_non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _unknown_keys(error: jsonschema.ValidationError) -> str:
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    known = list(schema.get("properties", {}))
    instance: Any = error.instance  # set on every error a validator yields
    unknown = [k for k in instance if k not in known]
    return (
        "; ".join(f"unknown key {k!r}{_did_you_mean(str(k), known)}" for k in unknown)
        or error.message
    )


def _did_you_mean(word: str, choices: list[Any]) -> str:
    close = difflib.get_close_matches(word, [str(c) for c in choices], n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (one of: {', '.join(str(c) for c in choices)})" if len(choices) <= 12 else ""


def _check_library(library: str) -> None:
    path = Path(library)
    if not path.is_dir():
        hint = ""
        if library.rstrip("/").endswith("example/library"):
            hint = f" (build the example library first: imganalyzer example {library})"
        raise ConfigError(f"config key 'library': folder not found: {library}{hint}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ConfigError(f"config key 'library': folder not readable: {library}")


def _check_xmp_mirror(config: dict[str, Any]) -> None:
    """At start, what the XMP step (which also refuses it) would find only at the end."""
    xmp = config["xmp"]
    if not xmp["enabled"] or xmp["mode"] != "mirror" or xmp["dir"] is None:
        return
    root, library = Path(xmp["dir"]).resolve(), Path(config["library"]).resolve()
    if root.is_relative_to(library) and not root.is_relative_to(Path(config["results"]).resolve()):
        raise ConfigError(
            f"config key 'xmp.dir': {xmp['dir']} lies inside the library {config['library']}: "
            "mode mirror never writes there (use mode: beside to write next to the originals)"
        )


def load_config_file(
    path: str | os.PathLike, overrides: dict[str, Any] | None = None, check_paths: bool = True
) -> dict[str, Any]:
    """Read a config.yaml, apply ``overrides`` (e.g. from the command line) and validate
    (``check_paths``: also that the library folder exists)."""
    config_path = Path(path)
    if not config_path.is_file():
        raise ConfigError(f"config file not found: {path}")
    config = _read_mapping(config_path)
    merge_config(config, overrides or {})
    return validate_config(config, check_paths)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not YAML: {' '.join(str(error).split())}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: not a mapping of config keys")
    return config


# ---------------------------------------------------------------- the run's own config

# The effective config of the last real run, recorded inside the results folder so that
# every command can work from the results alone (another folder, library unmounted).
# Where commands look for the results folder when --results is not given.
RESULTS_ENV = "IMGANALYZER_RESULTS"


def run_config_path(results: str | os.PathLike) -> Path:
    return Layout(results).run_config


def record_run_config(config: dict[str, Any]) -> Path:
    """Write the run's effective config to ``<results>/run/config.yaml`` (atomically), with
    the library and results folders made absolute. Called when a real run starts."""
    recorded = json.loads(json.dumps(dict(config), default=str))  # plain YAML types only
    recorded["library"] = os.path.abspath(recorded["library"])
    recorded["results"] = os.path.abspath(recorded["results"])
    path = run_config_path(recorded["results"])
    header = "# The effective config of the last run (written by the workflow; do not edit).\n"
    text = header + yaml.safe_dump(recorded, sort_keys=False)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # a re-run writes nothing
        atomic_write_text(path, text)
    return path


def find_results(explicit: str | os.PathLike | None = None, cwd: str | None = None) -> Path | None:
    """The results folder a command works on: ``explicit`` (``--results``), else
    ``$IMGANALYZER_RESULTS``, else the folder holding ``run/config.yaml`` that the current
    folder lies in (or is). None when there is none."""
    if explicit:
        return Path(explicit)
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV])
    here = Path(cwd or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if run_config_path(folder).is_file():
            return folder
    return None


def load_run_config(
    results: str | os.PathLike,
    overrides: dict[str, Any] | None = None,
    config_file: str | os.PathLike | None = None,
    check_paths: bool = False,
) -> dict[str, Any]:
    """The config a run recorded in ``results``; the keys of ``config_file`` and then
    ``overrides`` replace its own. The library need not be mounted; ``results`` is where the
    folder is now (it may have been moved since the run). ``check_paths``: whether the
    library must be mounted."""
    path = run_config_path(results)
    if not path.is_file():
        raise ConfigError(
            f"{results}: no recorded run config ({path}): run snakemake with "
            f"results={results} first, or pass --config"
        )
    config = _read_mapping(path)
    if config_file is not None:
        config_path = Path(config_file)
        if not config_path.is_file():
            raise ConfigError(f"config file not found: {config_file}")
        merge_config(config, _read_mapping(config_path))
    merge_config(config, overrides or {})
    config["results"] = os.path.abspath(results)
    return validate_config(config, check_paths)
