"""The kit's results as JSON (``gpu_kit.json``, for bench_projection.py) and as Markdown
tables (``gpu_kit.md``, for the README): each change before and after (same run,
``before_after`` in a section's JSON), the model
modules, the rates the projection takes, then every other figure."""

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
    ("loader threads", "loader_threads"),
    ("bare loop images/s", "bare_images_per_s"),
    ("pipeline / bare", "pipeline_vs_bare"),
)
MODEL_MODULES = ("embedding", "objects", "captions", "faces", "ocr", "aesthetic")
# Keys of a module's main row (the table above), not repeated among the details.
ROW_KEYS = {key for _, key in COLUMNS if key} | {
    "before_after", "device", "dtype", "batch_auto_initial", "batch_final", "model", "images",
    "seconds", "oom_backoffs",
}  # fmt: skip


def write_report(out: Path, results: dict[str, Any]) -> None:
    (out / "gpu_kit.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "gpu_kit.md").write_text(markdown(results))


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def pairs_table(modules: dict[str, Any]) -> list[str]:
    pairs = [p for row in modules.values() for p in row.get("before_after", [])]
    if not pairs:
        return []
    lines = ["| change | before | after | after / before |", "|---|---|---|---|"]
    for p in pairs:
        before = f"{p['before']}: {_cell(p['before_value'])} {p['unit']}"
        after = f"{p['after']}: {_cell(p['after_value'])} {p['unit']}"
        lines.append(f"| {p['change']} | {before} | {after} | {_cell(p['after_over_before'])} |")
    return lines + [""]


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


def projection_table(projection: dict[str, Any]) -> list[str]:
    if not projection:
        return []
    lines = ["", "| projection rate | images/s | how |", "|---|---|---|"]
    lines += [f"| {k} | {_cell(v['images_per_s'])} | {v['how']} |" for k, v in projection.items()]
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
    lines += pairs_table(modules)
    lines += module_table(modules)
    lines += projection_table(results.get("projection", {}))
    details = [
        (name, key, value)
        for name, row in modules.items()
        for top, nested in row.items()
        if top not in ROW_KEYS or name not in MODEL_MODULES
        for key, value in _flatten(top, nested)
    ]
    if details:
        lines += ["", "| section | measure | value |", "|---|---|---|"]
        lines += [f"| {n} | {k.lstrip('.')} | {_cell(v)} |" for n, k, v in details]
    for kind in ("skipped", "errors"):
        for name, reason in results.get(kind, {}).items():
            lines.append(f"\n- {name} {kind}: {reason}")
    lines.append(f"\nsection seconds: {results.get('section_s')}")
    lines.append(f"\nwall time {results.get('wall_s')} s")
    return "\n".join(lines) + "\n"
