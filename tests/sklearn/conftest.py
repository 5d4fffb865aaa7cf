"""Fixtures of the clusterml.sklearn tests: one module-wide 3-engine cluster in a private IPYTHONDIR."""

import os
import sys

import psutil
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT = os.path.join(os.path.dirname(HERE), "client")
if CLIENT not in sys.path:  # clienthelp: engine environment, leftover processes
    sys.path.insert(0, CLIENT)

from clienthelp import engine_env, wait_no_processes  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    import clusterml as cml

    old = os.environ.get("IPYTHONDIR")
    os.environ["IPYTHONDIR"] = str(tmp_path_factory.mktemp("ipython"))
    c = cml.Cluster(n=3, engine_env=engine_env(), timeout=120)
    try:
        yield c
    finally:
        c.stop()
        left = wait_no_processes()
        for pid, _ in left:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
        if old is None:
            os.environ.pop("IPYTHONDIR", None)
        else:
            os.environ["IPYTHONDIR"] = old
        assert not left, f"processes left behind: {left}"
