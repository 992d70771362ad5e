"""The kit's results as JSON (``gpu_kit.json``, for bench_projection.py) and as a Markdown
table (``gpu_kit.md``, for the README)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = (
    ("module", None),
    ("images/s", "images_per_s"),
    ("GPU util %", "gpu_utilisation_pct"),
    ("peak GPU GiB", "peak_gpu_memory_gib"),
    ("batch auto -> end", None),
    ("bare loop images/s", "bare_images_per_s"),
    ("pipeline / bare", "pipeline_vs_bare"),
    ("images/s, 6 loaders", "images_per_s_6_loaders"),
    ("pipeline / bare, 6 loaders", "pipeline_vs_bare_6_loaders"),
)
MODEL_MODULES = ("embedding", "objects", "captions", "faces", "aesthetic")


def write_report(out: Path, results: dict[str, Any]) -> None:
    (out / "gpu_kit.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "gpu_kit.md").write_text(markdown(results))


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def module_table(modules: dict[str, Any]) -> list[str]:
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |"]
    lines.append("|" + "---|" * len(COLUMNS))
    for name in MODEL_MODULES:
        row = modules.get(name)
        if row is None:
            continue
        cells = [f"{name} ({row.get('device', 'cuda')}, {row.get('dtype', '–')})"]
        for _, key in COLUMNS[1:]:
            if key is None:
                cells.append(f"{row.get('batch_auto_initial')} -> {row.get('batch_final')}")
            else:
                cells.append(_cell(row.get(key)))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _flatten(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(f"{prefix}.{k}", v)]
    return [(prefix, value)]


def markdown(results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    lines = [
        f"# GPU kit ({results.get('mode')}): {machine.get('gpu', 'no GPU')}",
        "",
        ", ".join(f"{k} {v}" for k, v in machine.items() if k != "gpu"),
        "",
    ]
    modules = results.get("modules", {})
    lines += module_table(modules)
    extras = ("precision", "features_once")
    details = [
        (name, key, value)
        for name, row in modules.items()
        for key in extras
        if key in row
        for key, value in _flatten(key, row[key])
    ]
    details += [
        (name, key, value)
        for name in ("out_of_memory", "duplicates")
        if name in modules
        for key, value in _flatten("", modules[name])
    ]
    details += [
        (name, key, value)
        for name, row in modules.items()
        for key, value in row.items()
        if "_batch_" in key
    ]
    for key in ("model", "providers"):
        details += [(name, key, row[key]) for name, row in modules.items() if key in row]
    if details:
        lines += ["", "| section | measure | value |", "|---|---|---|"]
        lines += [f"| {n} | {k.lstrip('.')} | {_cell(v)} |" for n, k, v in details]
    for kind in ("skipped", "errors"):
        for name, reason in results.get(kind, {}).items():
            lines.append(f"\n- {name} {kind}: {reason}")
    lines.append(f"\nwall time {results.get('wall_s')} s")
    return "\n".join(lines) + "\n"
