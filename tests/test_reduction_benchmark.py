"""benchmarks/reduction.py runs (timings are not checked; the byte counts are exact)."""

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, subprocess_env


@pytest.mark.timeout(300)
def test_reduction_benchmark_runs_and_counts_log_p_summaries(tmp_path):
    out_json = tmp_path / "reduction.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "reduction.py"),
                           "--ranks", "1,3", "--repeat", "3", "--json", str(out_json)],
                          cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=280,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "p= 4096" in proc.stdout
    data = json.loads(out_json.read_text())
    three = next(r for r in data["runs"] if r["p"] == 3)
    for name in ("covariance", "kmeans iteration"):
        packed = data["costs"][name]["packed_bytes"]
        # at most ceil(log2 3) + 1 = 3 summaries (plus a flag byte each) per rank
        assert three[name]["tree"]["received_max"] <= 3 * (packed + 1)
        assert three[name]["old"]["received_max"] == 2 * data["costs"][name]["pickle_bytes"]
