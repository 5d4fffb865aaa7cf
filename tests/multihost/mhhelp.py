"""Helpers of the multihost tests (a uniquely named module: several conftest.py files exist)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: this venv's bin: python, clusterml, mpiexec (the jobs inherit PATH with it first)
BIN = os.path.dirname(sys.executable)


def profile_files(ipython_dir: Path) -> list[str]:
    """Files under the Slurm profile that a stopped cluster must not leave (config aside)."""
    base = Path(ipython_dir) / "profile_clusterml-slurm"
    out = []
    for p in sorted(base.rglob("*")):
        rel = p.relative_to(base)
        if p.is_dir() or rel.name == "ipcluster_config.json" or rel.parts[0] in ("startup", "pid"):
            continue
        out.append(rel.as_posix())
    return out
