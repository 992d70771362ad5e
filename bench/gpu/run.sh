#!/usr/bin/env bash
# The GPU benchmark kit: `bash bench/gpu/run.sh [--cpu-smoke]` (kit.py --help: the rest).
# On a GPU machine without network, wheels fetched beforehand by fetch_wheels.sh into
# bench/gpu/wheels/ are installed into a temporary folder first. The table goes to $OUT
# when that is set, else to bench/gpu/out/.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
wheels="$root/bench/gpu/wheels"
# The wheels are for Python 3.12 (the GPU machine's): another Python has what it needs.
if compgen -G "$wheels/*.whl" >/dev/null \
    && "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))'; then
    site="$(mktemp -d)/site"
    "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
        --target "$site" "$wheels"/*.whl
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$python" bench/gpu/kit.py "$@"
