"""Fixtures for the Slurm tests live in ``tests/conftest.py`` (``live_slurm``,
``ipython_dir``), shared with ``tests/launch`` so that one session starts one Slurm.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# the tests import clusterml from this checkout even when run from elsewhere
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
