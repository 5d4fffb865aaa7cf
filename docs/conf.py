"""Sphinx configuration of clusterml's documentation site.

Build it with ``./dev.sh docs`` (or ``sphinx-build -W -b html docs docs/_build/html``).

The example notebooks in ``notebooks/`` are committed without outputs.  At build time they are
copied into ``docs/_notebooks/`` and myst-nb executes them (each starts its own local MPI engines;
``04-on-slurm`` needs a Slurm, so it is executed only when ``sinfo`` answers).  When the test suite
has just executed them (``tests/notebooks``), ``CLUSTERML_DOCS_EXECUTED`` names the folder of those
executed copies and the build uses them instead of running every notebook a second time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import clusterml  # noqa: E402

project = "clusterml"
author = "the clusterml developers"
copyright = "2026, the clusterml developers"
release = clusterml.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
]

# -- sources -----------------------------------------------------------------
exclude_patterns = ["_build", "**.ipynb_checkpoints", "_notebooks/data", "_notebooks/*.html"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# README sections are included into pages; their links point into the repository.
suppress_warnings = ["myst.xref_missing"]

# -- notebooks ---------------------------------------------------------------
NB_SRC = ROOT / "notebooks"
NB_DST = HERE / "_notebooks"


def _slurm_available() -> bool:
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _stage_notebooks() -> list[str]:
    """Copy the notebooks into the source tree; return the ones myst-nb must not execute."""
    executed = os.environ.get("CLUSTERML_DOCS_EXECUTED")
    NB_DST.mkdir(exist_ok=True)
    keep_as_is = []
    for src in sorted(NB_SRC.glob("[0-9][0-9]-*.ipynb")):
        done = Path(executed) / src.name if executed else None
        if done is not None and done.exists():
            shutil.copyfile(done, NB_DST / src.name)
            keep_as_is.append(src.stem)
        else:
            shutil.copyfile(src, NB_DST / src.name)
            if src.stem == "04-on-slurm" and not _slurm_available():
                keep_as_is.append(src.stem)
    return keep_as_is


_not_executed = _stage_notebooks()
nb_execution_mode = "force"
nb_execution_excludepatterns = [f"_notebooks/{name}.ipynb" for name in _not_executed]
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_merge_streams = True

# -- API reference -------------------------------------------------------------
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set = set()
intersphinx_mapping = {}

# -- HTML ----------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"clusterml {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list = []
