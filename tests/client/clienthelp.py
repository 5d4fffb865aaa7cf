"""Helpers of the facade tests (importable on the client; the engines import cml_testalgos)."""

import os
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def engine_env() -> dict:
    """What the engines need to import this checkout (and the test algorithms)."""
    return {"PYTHONPATH": os.pathsep.join([ROOT, HERE]), "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def my_processes(ipython_dir=None) -> list:
    """Controller, mpiexec, hydra proxies and engines started for this test session.

    Recognised by ipyparallel's IPP_PROFILE_DIR inside our temporary IPYTHONDIR
    (other engineers' MPI jobs on the machine are not ours).
    """
    ipython_dir = ipython_dir or os.environ["IPYTHONDIR"]
    out = []
    for p in psutil.process_iter(["pid", "name"]):
        if p.pid == os.getpid():
            continue
        try:
            env = p.environ()
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        if env.get("IPP_PROFILE_DIR", "").startswith(ipython_dir) or (
                env.get("IPYTHONDIR", "") == ipython_dir
                and p.info["name"] in ("mpiexec", "hydra_pmi_proxy")):
            out.append(p)
    return out


def wait_no_processes(timeout=20.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        left = my_processes()
        if not left or time.monotonic() > deadline:
            return [(p.pid, p.info["name"]) for p in left]
        time.sleep(0.25)


