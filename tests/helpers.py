"""Helpers shared by test modules (a uniquely named module: several conftest.py files exist)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def mpiexec_path() -> str:
    """The mpiexec that belongs to this interpreter's MPI (never a stray one on PATH)."""
    cand = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return cand if os.path.exists(cand) else "mpiexec"


def subprocess_env(**extra) -> dict:
    """Environment for a child Python that imports this checkout of clusterml."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env.update({k: str(v) for k, v in extra.items()})
    return env
