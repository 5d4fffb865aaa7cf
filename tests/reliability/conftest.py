"""Fixtures of the reliability suite: an isolated IPYTHONDIR and no orphans after a module."""

import os
import sys

import psutil
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import relhelp  # noqa: F401  (puts tests/ and tests/client on sys.path)
from clienthelp import wait_no_processes


@pytest.fixture(scope="session", autouse=True)
def ipython_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("ipython"))
    old = os.environ.get("IPYTHONDIR")
    os.environ["IPYTHONDIR"] = d
    yield d
    if old is None:
        os.environ.pop("IPYTHONDIR", None)
    else:
        os.environ["IPYTHONDIR"] = old


@pytest.fixture(scope="session")
def cluster(ipython_dir):
    """One cluster of 3 MPI engines shared by the suite (the SIGKILL rows restart it)."""
    from relhelp import reliability_engine_env

    import clusterml as cml

    c = cml.Cluster(n=3, engine_env=reliability_engine_env(), timeout=300)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="session", autouse=True)
def no_orphans_at_the_end(ipython_dir):
    """Nothing this suite started outlives it (the shared cluster is stopped first)."""
    yield
    left = wait_no_processes()
    for pid, _ in left:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass
    assert not left, f"processes left behind after the module: {left}"
