"""Tests of bench/run_scaling.sh's loop and summary (standard library only; no GPU, no MPI).

A fake `mpirun` on PATH runs its command once as rank 0, and a fake scaling_bench writes a result whose chunk time
follows from its mesh and policy and which records the flags it was given. The script must run every policy on
every mesh, pass --overlap-groups only to multi-rank meshes, keep the fastest mesh per GPU count within each
policy, compute the efficiency t1 / (N tN) per policy, and exit 1 when a run fails.
Run: python3 -m unittest discover tests/tools
"""

import json
import os
import stat
import subprocess
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "bench", "run_scaling.sh")

FAKE_MPIRUN = """#!/bin/bash
# mpirun -np N --bind-to none CMD ARGS...: run CMD once, as rank 0 of N.
while [ $# -gt 0 ]; do
  case "$1" in
    -np) export FAKE_NP=$2; shift 2 ;;
    --bind-to) shift 2 ;;
    *) break ;;
  esac
done
exec "$@"
"""

# Chunk ms: 1000 / N, plus 10 for a Ulysses mesh (so spatial wins), times 0.5 for LVSA; FAIL_MESH fails.
FAKE_BENCH = """#!/usr/bin/env python3
import json, os, sys
a = sys.argv[1:]
opt = {a[i]: a[i + 1] for i in range(0, len(a) - 1) if a[i].startswith("--")}
u, s = int(opt["--ulysses"]), int(opt["--spatial"])
if os.environ.get("FAIL_MESH") == f"{u}x{s}":
    sys.exit(1)
n = u * s
assert n == int(os.environ["FAKE_NP"]), (n, os.environ["FAKE_NP"])
ms = (1000.0 / n + (10.0 if u > 1 else 0.0)) * (0.5 if opt["--policy"] == "LVSA" else 1.0)
r = dict(model=opt["--model"], gpus=n, ulysses=u, spatial=s, transport=opt["--transport"], policy=opt["--policy"],
         overlap_groups=int(opt.get("--overlap-groups", 1)), steady_chunk_ms=ms, video_fps_dit=12000.0 / ms,
         bytes_sent_per_chunk=1e6 * (n - 1), peak_bytes_per_gpu=2 ** 30, argv=a)
json.dump({"result": r}, open(opt["--json"], "w"))
"""


class RunScalingTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        d = self.tmp.name
        self.bin = os.path.join(d, "bin")
        self.build = os.path.join(d, "build")
        os.makedirs(self.bin)
        os.makedirs(os.path.join(self.build, "bench"))
        for path, text in [(os.path.join(self.bin, "mpirun"), FAKE_MPIRUN),
                           (os.path.join(self.build, "bench", "scaling_bench"), FAKE_BENCH)]:
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
        self.out = os.path.join(d, "out")

    def tearDown(self):
        self.tmp.cleanup()

    def run_script(self, *args, fail_mesh=None):
        env = dict(os.environ, PATH=self.bin + os.pathsep + os.environ["PATH"])
        if fail_mesh:
            env["FAIL_MESH"] = fail_mesh
        return subprocess.run(["bash", SCRIPT, self.build, self.out, "--max-gpus", "2", "--size", "480p", *args],
                              capture_output=True, text=True, env=env)

    def test_every_policy_on_every_mesh_with_a_table_each(self):
        proc = self.run_script("--policies", "DENSE LVSA", "--overlap-groups", "2")
        self.assertEqual(proc.returncode, 0, proc.stdout + proc.stderr)
        with open(os.path.join(self.out, "scaling_1.3b_480p.json")) as f:
            summary = json.load(f)
        runs = summary["runs"]
        # 1x1, 1x2, 2x1 (12 heads) for each policy
        self.assertEqual(sorted((r["policy"], r["ulysses"], r["spatial"]) for r in runs),
                         sorted((p, u, s) for p in ("DENSE", "LVSA") for u, s in ((1, 1), (1, 2), (2, 1))))
        for r in runs:
            self.assertEqual(r["overlap_groups"], 1 if r["gpus"] == 1 else 2, r)
            self.assertEqual("--overlap-groups" in r["argv"], r["gpus"] > 1, r)
        tables = summary["best_per_gpu_count"]
        self.assertEqual(set(tables), {"DENSE", "LVSA"})
        for policy, scale in (("DENSE", 1.0), ("LVSA", 0.5)):
            rows = {row["gpus"]: row for row in tables[policy]}
            self.assertEqual(set(rows), {1, 2})
            self.assertEqual((rows[2]["ulysses"], rows[2]["spatial"]), (1, 2))  # the faster mesh
            self.assertAlmostEqual(rows[1]["chunk_ms"], 1000.0 * scale)
            self.assertAlmostEqual(rows[2]["efficiency"], (1000.0 * scale) / (2 * 500.0 * scale))
        self.assertIn("LVSA", proc.stdout)

    def test_a_failed_run_fails_the_script(self):
        proc = self.run_script("--policies", "DENSE", fail_mesh="2x1")
        self.assertEqual(proc.returncode, 1, proc.stdout + proc.stderr)
        self.assertIn("FAIL: DENSE mesh 2x1", proc.stdout)

    def test_unknown_argument_is_refused(self):
        proc = self.run_script("--policy", "DENSE")
        self.assertEqual(proc.returncode, 2)
        self.assertIn("unknown argument '--policy'", proc.stderr)


if __name__ == "__main__":
    unittest.main()
