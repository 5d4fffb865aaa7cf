"""ipyparallel profile ``clusterml-slurm``: MPI engines as ONE Slurm job.

The engines job runs ``srun --mpi=pmi2 <ipengine> --mpi`` (or the MPI mode set
below), so all engines form one MPI world and engine id == MPI rank. The
controller runs here (the login node) by default, listening on the configured
interface; set ``CONTROLLER["on_compute_node"]`` to run it as its own Slurm job.

Installed into ``$IPYTHONDIR/profile_clusterml-slurm`` by ``clusterml profile
install``, which writes the settings below from its command line. The job
scripts are rendered by ``clusterml.launch.slurm`` and written (mode 0700) into
this profile's ``jobs/`` folder, never the current directory.
"""

import os

# ============================================================================
# SITE SETTINGS -- edit these for your cluster (None = Slurm's site default)
# ============================================================================
SITE = dict(
    account=None,  # --account, e.g. "myproject"
    partition=None,  # --partition, e.g. "batch"
    time="01:00:00",  # --time (wall time of the engines job)
    nodes=None,  # --nodes
    ntasks_per_node=None,  # --ntasks-per-node
    cpus_per_task=1,  # --cpus-per-task; also OMP/OPENBLAS/MKL_NUM_THREADS
    mem=None,  # --mem per node, e.g. "16G"
    extra_sbatch=[],  # more sbatch options, e.g. ["--qos=normal", "--constraint=skylake"]
    setup=[],  # shell lines run first, e.g. ["module load mpi/mpich"]
    venv=None,  # a virtualenv to activate in the job (None: inherit PATH, --export=ALL)
    mpi="pmi2",  # "pmi2" (srun --mpi=pmi2), "pmix", "mpiexec" inside the job ("none": singletons!)
    mpiexec="mpiexec",  # the mpiexec for mpi="mpiexec" (must match mpi4py's MPI)
)
CONTROLLER = dict(
    ip=None,  # address the controller listens on; None: the interface's below if set, else "*" (all)
    interface=None,  # e.g. "ib0": engines connect to this interface's address
    location=None,  # or give the host/address engines connect to directly
    on_compute_node=False,  # True: the controller is a one-task Slurm job too
)
ENGINE_TIMEOUT = 300  # seconds to wait for engines (includes time in the queue)
# ============================================================================

from clusterml.launch.slurm import (  # noqa: E402
    SlurmSettings,
    interface_address,
    render_controller_batch_template,
    render_engine_batch_template,
)

c = get_config()  # noqa: F821  (provided by the config loader)

_jobs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "jobs")
os.makedirs(_jobs, mode=0o700, exist_ok=True)
os.chmod(_jobs, 0o700)

_settings = SlurmSettings.from_mapping(SITE)

c.Cluster.engine_launcher_class = "slurm"
c.Cluster.engine_timeout = ENGINE_TIMEOUT
c.SlurmEngineSetLauncher.batch_template = render_engine_batch_template(_settings)
# an absolute name: ipyparallel joins it to its work_dir ('.'), which keeps it
c.SlurmEngineSetLauncher.batch_file_name = os.path.join(_jobs, "slurm_engine.sbatch")

if CONTROLLER["ip"]:
    c.Cluster.controller_ip = CONTROLLER["ip"]
elif CONTROLLER["interface"] and not CONTROLLER["on_compute_node"]:
    # listen on the configured interface only, not on every interface of the login node
    c.Cluster.controller_ip = interface_address(CONTROLLER["interface"])
else:
    c.Cluster.controller_ip = "*"
if CONTROLLER["location"]:
    c.Cluster.controller_location = CONTROLLER["location"]
elif CONTROLLER["interface"]:
    c.Cluster.controller_location = interface_address(CONTROLLER["interface"])

if CONTROLLER["on_compute_node"]:
    c.Cluster.controller_launcher_class = "slurm"
    _ctl = {k: v for k, v in SITE.items() if k not in ("nodes", "ntasks_per_node", "mpi", "mpiexec")}
    c.SlurmControllerLauncher.batch_template = render_controller_batch_template(
        SlurmSettings.from_mapping(_ctl)
    )
    c.SlurmControllerLauncher.batch_file_name = os.path.join(_jobs, "slurm_controller.sbatch")
else:
    c.Cluster.controller_launcher_class = "local"
