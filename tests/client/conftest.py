"""Fixtures of the facade tests: an isolated IPYTHONDIR, one module-wide 3-engine cluster,
and the check that no controller / mpiexec / engine of ours outlives a test module."""

import os
import sys
import time

import psutil
import pytest



HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
_IPYTHONDIR = None


def engine_env() -> dict:
    """What the engines need to import this checkout (and the test algorithms)."""
    return {"PYTHONPATH": os.pathsep.join([ROOT, HERE]), "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def my_processes(ipython_dir=None) -> list:
    """Controller, mpiexec, hydra proxies and engines started for this test session.

    Recognised by ipyparallel's IPP_PROFILE_DIR inside our temporary IPYTHONDIR
    (other engineers' MPI jobs on the machine are not ours).
    """
    ipython_dir = ipython_dir or _IPYTHONDIR
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
        if env.get("IPP_PROFILE_DIR", "").startswith(ipython_dir) or \
                env.get("IPYTHONDIR", "") == ipython_dir and p.info["name"] in ("mpiexec", "hydra_pmi_proxy"):
            out.append(p)
    return out


def wait_no_processes(timeout=20.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        left = my_processes()
        if not left or time.monotonic() > deadline:
            return [(p.pid, p.info["name"]) for p in left]
        time.sleep(0.25)


@pytest.fixture(scope="session", autouse=True)
def ipython_dir(tmp_path_factory):
    global _IPYTHONDIR
    d = str(tmp_path_factory.mktemp("ipython"))
    old = os.environ.get("IPYTHONDIR")
    os.environ["IPYTHONDIR"] = _IPYTHONDIR = d
    yield d
    if old is None:
        os.environ.pop("IPYTHONDIR", None)
    else:
        os.environ["IPYTHONDIR"] = old


@pytest.fixture(scope="module", autouse=True)
def no_orphans_after_module(ipython_dir):
    yield
    left = wait_no_processes()
    for pid, _ in left:  # clean up so the next module starts clean, then fail
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
    assert not left, f"processes left behind after the module: {left}"


@pytest.fixture(scope="module")
def cluster(ipython_dir):
    import clusterml as cml

    if HERE not in sys.path:
        sys.path.insert(0, HERE)
    import cml_testalgos  # noqa: F401  (registers the test algorithms on the client)

    c = cml.Cluster(n=3, engine_env=engine_env(), timeout=120)
    try:
        c.view.execute("import cml_testalgos")
        yield c
    finally:
        c.stop()
