"""Run every benchmark and print one combined table, with the machine description on top.

Run from the repository root as a plain script (``bench/`` is then first on ``sys.path``, so
``common`` imports directly):

    .venv/bin/python bench/run_all.py            # about 2-3 minutes on 2 cores
    .venv/bin/python bench/run_all.py --quick    # smoke test, a few seconds

Each benchmark runs in its own subprocess (a clean interpreter: the catalog benchmark's audit
hook cannot be removed once installed) and hands its rows back as JSON; its progress lines
are shown as it runs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import format_table, load_rows, machine_description

BENCH_DIR = Path(__file__).resolve().parent
BENCHES = (
    "bench_decode.py",
    "bench_metadata.py",
    "bench_catalog.py",
    "bench_rerun.py",
    "bench_embedding.py",
    "bench_search.py",
    "bench_web.py",
    "bench_dag.py",
    "bench_projection.py",
    "bench_objects.py",
    "bench_captions.py",
    "bench_ocr.py",
    "bench_faces.py",
    "bench_duplicates.py",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shrink every benchmark")
    args = parser.parse_args(argv)
    print(machine_description(), flush=True)
    started = time.perf_counter()
    tables = []
    with tempfile.TemporaryDirectory(prefix="imganalyzer-bench-") as tmp:
        for script in BENCHES:
            out = Path(tmp) / f"{script}.json"
            command = [sys.executable, str(BENCH_DIR / script), "--json", str(out)]
            command += ["--quick"] if args.quick else []
            print(f"\n--- {script}{' --quick' if args.quick else ''}", flush=True)
            if subprocess.run(command, check=False).returncode != 0:
                print(f"{script} failed", file=sys.stderr)
                return 1
            tables.append(load_rows(str(out)))
    print(
        f"\n=== results ({time.perf_counter() - started:.0f} s in all; best of n runs, "
        "median in the note; ratios are taken within this one run)"
    )
    print(machine_description())
    for title, rows in tables:
        print()
        print(format_table(rows, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
