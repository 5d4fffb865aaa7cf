"""ipyparallel profile ``clusterml-local``: MPI engines on this machine via ``mpiexec``.

Engines are started as ``mpiexec -n N <ipengine> --mpi`` so they form one MPI
world and engine id == MPI rank. The ``mpiexec`` next to the running Python is
used, since it belongs to the MPI library mpi4py loads (a different one on PATH
makes engines die at start). The controller listens on loopback only.
"""

import os
import shutil
import sys

# ============================================================================
# SITE SETTINGS -- edit these
# ============================================================================
MPIEXEC = None  # None: the mpiexec next to this Python, else PATH's; or a full path
MPI_ARGS = []  # extra mpiexec arguments, e.g. ["-bind-to", "none"]
CONTROLLER_IP = "127.0.0.1"  # loopback: engines are local
ENGINE_TIMEOUT = 120  # seconds to wait for engines to register
# ============================================================================

c = get_config()  # noqa: F821  (provided by the config loader)


def _mpiexec():
    if MPIEXEC:
        return MPIEXEC
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.access(here, os.X_OK):
        return here
    return shutil.which("mpiexec") or "mpiexec"


c.Cluster.engine_launcher_class = "mpi"
c.Cluster.controller_launcher_class = "local"
c.Cluster.controller_ip = CONTROLLER_IP
c.Cluster.engine_timeout = ENGINE_TIMEOUT
c.MPIEngineSetLauncher.mpi_cmd = [_mpiexec()]  # engines get --mpi from ipyparallel
c.MPIEngineSetLauncher.mpi_args = list(MPI_ARGS)
