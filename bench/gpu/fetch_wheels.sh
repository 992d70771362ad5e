#!/usr/bin/env bash
# Download, on a machine with PyPI, the wheels the GPU kit needs on a GPU machine without
# network: `bash bench/gpu/fetch_wheels.sh DIR` (default bench/gpu/wheels). Python 3.12,
# x86-64 manylinux, exactly the packages of requirements.txt, no dependency resolution.
# Fails if the set is over 48 MiB (what one device call can carry beside the repository).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:-$here/wheels}"
limit_mib=48
mkdir -p "$dest"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
    manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$p")
done
grep -v '^\s*#' "$here/requirements.txt" | grep -v '^\s*$' > "$dest/.requirements"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$dest" -r "$dest/.requirements" 2>&1 \
    | grep -v "is ignored: it is neither" || true
rm -f "$dest/.requirements"
# PP-OCR's detector and recogniser (the OCR module's models) without their weights (31 MB
# of them, too many to carry): the kit draws random ones (bench/gpu/onnx_torch.py).
rapidocr_version=3.10.0  # the one installed here (pyproject: rapidocr>=3.4,<4)
models="rapidocr/models/PP-OCRv6_det_small.onnx rapidocr/models/PP-OCRv6_rec_small.onnx"
scratch="$(mktemp -d)"
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$scratch" \
    "rapidocr==$rapidocr_version" 2>&1 | grep -v "is ignored: it is neither" || true
# shellcheck disable=SC2086 (one argument per model)
python3 "$here/onnx_torch.py" "$scratch"/rapidocr-*.whl "$dest/ppocr" $models
rm -rf "$scratch"
count=$(find "$dest" -name '*.whl' | wc -l)
expected=$(grep -cv '^\s*\(#\|$\)' "$here/requirements.txt")
bytes=$(find "$dest" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
mib=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')
echo "$count wheels ($expected required), $mib MiB in $dest"
[ "$count" -eq "$expected" ] || { echo "missing wheels" >&2; exit 1; }
[ "$(find "$dest/ppocr" -name '*.onnx' | wc -l)" -eq 2 ] || { echo "no PP-OCR graphs" >&2; exit 1; }
awk -v b="$bytes" -v l="$limit_mib" 'BEGIN {exit !(b <= l * 1048576)}' \
    || { echo "over the $limit_mib MiB limit" >&2; exit 1; }
