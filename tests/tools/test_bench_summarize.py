"""Tests of bench/summarize.py on the H100 results committed under bench/results (standard library only).

The merged ratios must be longroll's time over the reference's, the checks must follow the issue's targets, and
a missing reference must show as missing rather than as a pass.
Run: python3 -m unittest discover tests/tools
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(REPO, "bench", "summarize.py")
RESULTS = os.path.join(REPO, "bench", "results")
# run_gpu.sh names -> the committed copies of one H100 run
INPUTS = {name: f"{name}_h100.json" for name in
          ["sf_reference", "dit_bench", "vae_bench", "e2e_bench", "attention_bench", "attention_sdpa"]}


class SummarizeTest(unittest.TestCase):
    def run_summary(self, names):
        with tempfile.TemporaryDirectory() as d:
            for name in names:
                shutil.copy(os.path.join(RESULTS, INPUTS[name]), os.path.join(d, name + ".json"))
            out = os.path.join(d, "summary.json")
            proc = subprocess.run([sys.executable, TOOL, "--dir", d, "--out", out, "--commit", "test"],
                                  capture_output=True, text=True)
            self.assertEqual(proc.returncode, 0, proc.stderr)
            with open(out) as f:
                return json.load(f), proc.stdout

    def test_ratios_are_longroll_over_reference(self):
        summary, table = self.run_summary(INPUTS.keys())
        with open(os.path.join(RESULTS, INPUTS["sf_reference"])) as f:
            ref = json.load(f)
        with open(os.path.join(RESULTS, INPUTS["dit_bench"])) as f:
            dit = json.load(f)
        ratios = {r["item"]: r for r in summary["ratios"]}
        item = "dit.full_window_chunk.480p"
        want = dit["results"][item]["ms"] / ref["results"][item]["ms"]
        self.assertAlmostEqual(ratios[item]["ratio"], want, places=6)
        self.assertIn(item, table)

    def test_checks_follow_the_targets(self):
        summary, _ = self.run_summary(INPUTS.keys())
        checks = {c["check"]: c["pass"] for c in summary["checks"]}
        ratios = {r["item"]: r["ratio"] for r in summary["ratios"]}
        self.assertEqual(checks["dit.full_window_chunk.480p ratio <= 0.75x"],
                         ratios["dit.full_window_chunk.480p"] <= 0.75)
        self.assertEqual(checks["vae.decode_chunk.1088p ratio <= 0.7x"], ratios["vae.decode_chunk.1088p"] <= 0.7)
        self.assertTrue(checks["1088p DiT + VAE fit in 80 GB"])

    def test_missing_reference_is_not_a_pass(self):
        summary, table = self.run_summary(["dit_bench", "vae_bench"])
        self.assertIn("[missing]", table)
        for c in summary["checks"]:
            if "ratio" in c["check"]:
                self.assertIsNot(c["pass"], True, c)


if __name__ == "__main__":
    unittest.main()
