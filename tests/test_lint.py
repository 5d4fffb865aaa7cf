"""The lint gate: ``ruff check`` (configured in pyproject.toml, version pinned in the test extra)."""

import subprocess
import sys

from helpers import ROOT


def test_ruff_finds_nothing():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format",
                           "concise", ROOT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"ruff check found problems:\n{proc.stdout[-20000:]}{proc.stderr}"


def test_the_gate_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef f(x):\n    return undefined_name + x\n")
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated",
                           "--select", "F", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "F401" in proc.stdout and "F821" in proc.stdout, proc.stdout
