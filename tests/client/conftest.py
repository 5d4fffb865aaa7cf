"""Fixtures of the facade tests: an isolated IPYTHONDIR, one module-wide 3-engine cluster,
and the check that no controller / mpiexec / engine of ours outlives a test module."""

import os
import sys

import psutil
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # clienthelp and cml_testalgos
    sys.path.insert(0, HERE)

from clienthelp import engine_env, wait_no_processes  # noqa: E402


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
    import cml_testalgos  # noqa: F401  (registers the test algorithms on the client)

    import clusterml as cml

    c = cml.Cluster(n=3, engine_env=engine_env(), timeout=120)
    try:
        c.view.execute("import cml_testalgos")
        yield c
    finally:
        c.stop()
