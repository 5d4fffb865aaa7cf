"""The one "which ``mpiexec``" helper of clusterml.

A different ``mpiexec`` found first on PATH (say Open MPI's while mpi4py loads
MPICH) makes every engine die at start (exit code 16), so the ``mpiexec`` next
to the running interpreter wins; PATH is only the fallback.
"""

from __future__ import annotations

import os
import shutil
import sys

__all__ = ["which_mpiexec"]


def which_mpiexec(required: bool = True) -> str | None:
    """The ``mpiexec`` that belongs to the MPI mpi4py uses here.

    Parameters
    ----------
    required : bool
        Raise when there is none (default); otherwise return None.

    Returns
    -------
    str or None
        The path next to ``sys.executable``, else the first on PATH.

    Raises
    ------
    FileNotFoundError
        No ``mpiexec`` next to the interpreter nor on PATH (with the fix).
    """
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("mpiexec")
    if found is None and required:
        raise FileNotFoundError(
            f"no mpiexec next to {sys.executable} nor on PATH; install the MPI mpi4py "
            f"uses (pip install mpich) or set MPIEngineSetLauncher.mpi_cmd")
    return found
