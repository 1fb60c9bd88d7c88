#!/usr/bin/env python3
"""Tests of onnx_to_tflite.py's argument and layout helpers (no converter runs)."""
import argparse
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_to_tflite import parse_shape, to_onnx_layout, to_onnx_layout_ok  # noqa: E402


class Helpers(unittest.TestCase):
    def test_shape_parsed(self):
        self.assertEqual(parse_shape("x=1,3,640,640"), ("x", [1, 3, 640, 640]))

    def test_bad_shapes_refused(self):
        for bad in ["x", "=1,3", "x=", "x=1,a,3"]:
            with self.assertRaises(argparse.ArgumentTypeError):
                parse_shape(bad)

    def test_channels_last_output_brought_back(self):
        nchw = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
        nhwc = nchw.transpose(0, 2, 3, 1)
        np.testing.assert_array_equal(to_onnx_layout(nhwc, nchw.shape), nchw)
        self.assertIs(to_onnx_layout(nchw, nchw.shape), nchw)

    def test_other_shapes_do_not_match(self):
        y = np.zeros((1, 5, 5, 2), dtype=np.float32)
        self.assertFalse(to_onnx_layout_ok(y, (1, 3, 5, 5)))
        with self.assertRaises(SystemExit):
            to_onnx_layout(y, (1, 3, 5, 5))


if __name__ == "__main__":
    unittest.main()
