"""The documentation site builds with warnings as errors, and its notebook pages hold their plots.

The notebooks were executed earlier in this session by ``test_notebooks.py`` (their executed
copies are in ``.ci/artifacts/notebooks/``); the site reuses the copies written during this
session instead of running every notebook a second time.  A notebook with no fresh executed copy
is executed by the build itself (myst-nb), ``04-on-slurm`` against the session's dev Slurm.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
from test_notebooks import ARTIFACTS, NOTEBOOKS, ROOT

SESSION_START = time.time()


def _fresh_executed(dest) -> list:
    """Copy this session's executed notebooks into ``dest``; return their names."""
    found = []
    for name in NOTEBOOKS:
        src = os.path.join(ARTIFACTS, name + ".ipynb")
        if os.path.exists(src) and os.path.getmtime(src) >= _session_start():
            shutil.copy(src, os.path.join(dest, name + ".ipynb"))
            found.append(name)
    return found


def _session_start() -> float:
    """When this pytest session started (set by tests/conftest.py)."""
    return float(os.environ.get("CLUSTERML_TEST_SESSION_START", SESSION_START))


def _images_in(nb_path: str) -> int:
    with open(nb_path, encoding="utf-8") as fh:
        nb = json.load(fh)
    return sum("image/png" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.timeout(1500)
def test_docs_site_builds_with_warnings_as_errors(live_slurm, tmp_path):
    executed = tmp_path / "executed"
    executed.mkdir()
    reused = _fresh_executed(executed)
    out = tmp_path / "html"
    ipython_dir = tmp_path / "ipython"
    ipython_dir.mkdir(mode=0o700)
    env = dict(os.environ, CLUSTERML_DOCS_EXECUTED=str(executed), IPYTHONDIR=str(ipython_dir),
               PYTHONPATH=ROOT)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
         os.path.join(ROOT, "docs"), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1400)
    took = time.monotonic() - t0
    print(f"\ndocs: built in {took:.1f} s, {len(reused)} notebook(s) reused from this session, "
          f"{len(NOTEBOOKS) - len(reused)} executed by the build")
    assert proc.returncode == 0, f"sphinx-build failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-10000:]}"

    for page in ("index", "getting-started", "porting", "cluster", "farming", "api", "reliability",
                 "benchmarks", "design"):
        assert (out / f"{page}.html").exists(), f"no {page}.html"
    api = (out / "api.html").read_text(encoding="utf-8")
    for name in ("clusterml.kmeans", "clusterml.Cluster", "clusterml.read_partition"):
        assert f'id="{name}"' in api, f"{name} is not in the API reference"

    for name in NOTEBOOKS:
        page = out / "_notebooks" / f"{name}.html"
        assert page.exists(), f"no page for notebook {name}"
        html = page.read_text(encoding="utf-8")
        imgs = re.findall(r'<img[^>]+src="([^"]+\.png)"', html)
        assert imgs, f"{name}: the page holds no image"
        for src in imgs:
            assert (page.parent / src).resolve().exists(), f"{name}: image {src} missing"
        assert "ALL CHECKS PASSED" in html, f"{name}: the page does not show the notebook's checks"
        if name in reused:
            assert len(imgs) >= _images_in(executed / f"{name}.ipynb")
