"""Tests of bench/attention_ab.sh (standard library and the patch program only; no GPU, no CUDA build).

The committed candidates must apply to the tree in order (a kernel edit that breaks one fails here). The whole A/B
flow runs on a fake repository copy: a fake `cmake` makes build dirs whose fake attention_bench reports 400 TFLOP/s
plus 10 per "FAST" line in its tree's kernel, and whose fake gpu_tests fail when the kernel holds "BROKEN". The
script must build cumulative variants, time only those whose tests pass, and report medians and the ratios to the
tree and to SDPA; bad arguments and a patch that does not apply exit 2 with nothing written.
Run: python3 -m unittest discover tests/tools
"""

import json
import os
import shutil
import stat
import subprocess
import tempfile
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "bench", "attention_ab.sh")

FAKE_CMAKE = r"""#!/bin/bash
# configure: cmake -S . -B DIR ...; build: cmake --build DIR --target ...
if [ "$1" = -S ]; then mkdir -p "$4"; echo "$PWD" > "$4/src"; exit 0; fi
[ "$1" = --build ] || exit 3
d=$2; src=$(cat "$d/src")
mkdir -p "$d/bench" "$d/tests"
cat > "$d/bench/attention_bench" <<EOF
#!/usr/bin/env python3
import json, os, sys
a = sys.argv[1:]
opt = {a[i]: a[i + 1] for i in range(len(a) - 1) if a[i].startswith("--")}
assert os.path.exists(opt["--sdpa-json"])
fast = open("$src/kernels/paged_attention.cu").read().count("FAST")
t = 400.0 + 10 * fast
cases = [dict(name=n, tflops=t + (1 if os.environ["LONGROLL_COMMIT"].endswith("x") else 0), max_rel_err=1e-3)
         for n in ("480p dense", "1088p dense")]
json.dump(dict(commit=os.environ["LONGROLL_COMMIT"], cases=cases), open(opt["--json"], "w"))
EOF
cat > "$d/tests/gpu_tests" <<EOF
#!/bin/bash
grep -q BROKEN "$src/kernels/paged_attention.cu" && { echo "[  FAILED  ] 1 test"; exit 1; }
echo "[  PASSED  ] 3 tests."
EOF
chmod +x "$d/bench/attention_bench" "$d/tests/gpu_tests"
"""

FAKE_SDPA = """import json, sys
json.dump({"cases": [{"name": "480p", "tflops": 500.0}, {"name": "1088p", "tflops": 500.0}]},
          open(sys.argv[sys.argv.index("--json") + 1], "w"))
"""


def add_line_patch(word, after):
    """A patch adding the line `word` after the line `after` of the fake kernel (one context line each side)."""
    return (f"--- a/kernels/paged_attention.cu\n+++ b/kernels/paged_attention.cu\n"
            f"@@ -{after},2 +{after},3 @@\n line{after}\n+{word}\n line{after + 1}\n")


class AttentionAbTest(unittest.TestCase):
    def setUp(self):
        if shutil.which("patch") is None and shutil.which("git") is None:
            self.skipTest("neither patch nor git is installed")
        self.tmp = tempfile.TemporaryDirectory()
        d = self.tmp.name
        self.repo = os.path.join(d, "repo")
        os.makedirs(os.path.join(self.repo, "bench"))
        os.makedirs(os.path.join(self.repo, "kernels"))
        shutil.copy(SCRIPT, os.path.join(self.repo, "bench", "attention_ab.sh"))
        with open(os.path.join(self.repo, "bench", "attention_sdpa.py"), "w") as f:
            f.write(FAKE_SDPA)
        with open(os.path.join(self.repo, "kernels", "paged_attention.cu"), "w") as f:
            f.write("".join(f"line{i}\n" for i in range(1, 11)))
        self.bin = os.path.join(d, "bin")
        os.makedirs(self.bin)
        for name, text in [("cmake", FAKE_CMAKE), ("nvidia-smi", "#!/bin/bash\necho 'Fake GPU, 80 GiB'\n")]:
            path = os.path.join(self.bin, name)
            with open(path, "w") as f:
                f.write(text)
            os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
        self.patches = []
        for i, (word, after) in enumerate([("FAST", 2), ("FAST", 6), ("BROKEN", 9)]):
            path = os.path.join(d, f"0{i + 1}-p{i + 1}.patch")
            with open(path, "w") as f:
                f.write(add_line_patch(word, after))
            self.patches.append(path)
        self.out = os.path.join(d, "out")

    def tearDown(self):
        self.tmp.cleanup()

    def run_ab(self, *args, script=None):
        env = dict(os.environ, PATH=self.bin + os.pathsep + os.environ["PATH"], LONGROLL_COMMIT="abc")
        return subprocess.run(["bash", script or os.path.join(self.repo, "bench", "attention_ab.sh"), *args],
                              capture_output=True, text=True, env=env, timeout=120)

    def test_committed_candidates_apply_to_the_tree(self):
        r = self.run_ab(self.out, "--apply-only", script=SCRIPT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("patches apply in order", r.stdout)

    def test_cumulative_variants_failed_tests_not_timed_and_ratios(self):
        r = self.run_ab(self.out, "--rounds", "3", *self.patches)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(self.out, "attention_ab.json")) as f:
            doc = json.load(f)
        self.assertEqual(doc["gpu"], "Fake GPU, 80 GiB")
        self.assertEqual(doc["sdpa_tflops"], {"480p": 500.0, "1088p": 500.0})
        v = doc["variants"]
        self.assertEqual([x["name"] for x in v], ["tree", "+01-p1", "+02-p2", "+03-p3"])
        self.assertEqual([x["tests_passed"] for x in v], [True, True, True, False])
        self.assertEqual(v[3]["cases"], {})  # failed its tests: not timed
        # Cumulative: variant 2 carries both FAST lines.
        for k, want in [(0, 400.0), (1, 410.0), (2, 420.0)]:
            c = v[k]["cases"]["1088p dense"]
            self.assertEqual(c["tflops_runs"], [want] * 3)
            self.assertEqual(c["tflops_median"], want)
            self.assertAlmostEqual(c["vs_tree"], want / 400.0, places=4)
            self.assertAlmostEqual(c["vs_sdpa"], want / 500.0, places=4)
        self.assertIn("+02-p2", r.stdout)
        self.assertTrue(os.path.exists(os.path.join(self.out, "logs.tar")))

    def test_patch_that_does_not_apply_exits_2_writing_nothing(self):
        bad = os.path.join(self.tmp.name, "bad.patch")
        with open(bad, "w") as f:
            f.write(add_line_patch("X", 4).replace(" line4\n", " no such line\n"))
        r = self.run_ab(self.out, self.patches[0], bad)
        self.assertEqual(r.returncode, 2)
        self.assertIn("bad.patch does not apply", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.out, "attention_ab.json")))

    def test_bad_arguments_exit_2(self):
        for args in [[], ["--rounds", "2"], [self.out, "--rounds", "0"], [self.out, "--rounds"],
                     [self.out, "missing.patch"], [self.out, "--frobnicate"]]:
            r = self.run_ab(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertFalse(os.path.exists(os.path.join(self.out, "attention_ab.json")), args)


if __name__ == "__main__":
    unittest.main()
