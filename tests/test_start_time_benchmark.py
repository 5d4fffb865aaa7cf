"""``benchmarks/start_time.py`` runs (at ``--quick`` size; its timings are not looked at here)."""

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, subprocess_env


@pytest.mark.timeout(400)
def test_start_time_benchmark_quick(tmp_path):
    out_json = tmp_path / "start.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "start_time.py"), "--quick",
                           "--json", str(out_json)], cwd=ROOT, env=subprocess_env(), capture_output=True,
                          text=True, timeout=360, check=False)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    data = json.loads(out_json.read_text())
    for what in ("bare", "clusterml"):
        (run,) = data["runs"][what]
        assert 0 < run["ready"] <= run["first_call"], run
        assert 0 < run["start_controller_done"] < run["start_engines_done"] < run["ready"], run
    assert data["runs"]["clusterml"][0]["algorithm_first"] > 0
    assert "clusterml - bare: ready" in proc.stdout, proc.stdout
