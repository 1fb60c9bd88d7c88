#!/usr/bin/env python3
"""Tests of side_by_side.py's parsing and README update (no engines run)."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from side_by_side import last_table, ort_latency_ms, replace_block  # noqa: E402


class Helpers(unittest.TestCase):
    def test_latency_lines(self):
        text = ("ort 1.32.0 median 4.522 ms  min 4.314  p90 4.716  (30 runs, 1 thread)  /m/a.f32.onnx\n"
                "noise\nort 1.32.0 median 17.923 ms  min 11.671  p90 18.824  (30 runs, 1 thread)  /m/a.int8.onnx\n")
        self.assertEqual(ort_latency_ms(text), {"/m/a.f32.onnx": 4.522, "/m/a.int8.onnx": 17.923})

    def test_last_table(self):
        text = "| a |\n| - |\nx\n| b | c |\n| --- | --- |\n| 1 | 2 |\nend"
        self.assertEqual(last_table(text), "| b | c |\n| --- | --- |\n| 1 | 2 |")
        self.assertEqual(last_table("no table"), "")

    def test_block_replaced_or_appended(self):
        doc = "intro\n<!-- peers:m -->\nold\n<!-- /peers:m -->\ntail\n"
        self.assertEqual(replace_block(doc, "m", "new\n"), "intro\n<!-- peers:m -->\nnew\n<!-- /peers:m -->\ntail\n")
        self.assertEqual(replace_block("intro\n", "m", "new"), "intro\n\n<!-- peers:m -->\nnew\n<!-- /peers:m -->\n")


if __name__ == "__main__":
    unittest.main()
