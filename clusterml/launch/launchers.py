"""ipyparallel launchers of clusterml, registered as ipyparallel launcher entry points.

- ``clusterml-slurm`` (engines and controller): subclasses of ipyparallel's
  :class:`~ipyparallel.cluster.launcher.SlurmEngineSetLauncher` /
  ``SlurmControllerLauncher``.  Site settings are traitlets traits, declared
  once on :class:`SlurmSite` (``c.SlurmSite.nodes = 2``); the batch script is
  rendered by the pure renderer :mod:`clusterml.launch.slurm` (quoting,
  refusals).  ipyparallel's own ``SlurmLauncher.account`` / ``qos`` /
  ``timelimit`` and ``queue`` (the partition) take effect; ``options``, a
  ``batch_template`` or a ``batch_template_file`` are refused with a message.
  A watcher asks Slurm (squeue, then scontrol / sacct) every
  ``poll_interval`` seconds and calls ipyparallel's ``notify_stop`` when the
  job ends or pends for a reason that never clears, with the Slurm state, the
  engine log's tail, the cause in words and the fix (see :mod:`.diagnose`) in
  ``stop_data``: every wait, notebook or CLI, sees it without a loop of its own.
- ``clusterml-mpi`` (engines): ipyparallel's ``MPIEngineSetLauncher`` with the
  ``mpiexec`` next to this interpreter by default and an ``env`` setting.
"""

from __future__ import annotations

import os
import subprocess
import threading

from ipyparallel.cluster.launcher import MPIEngineSetLauncher, SlurmControllerLauncher, SlurmEngineSetLauncher
from traitlets import Bool, Dict, Float, Integer, List, Unicode, default
from traitlets.config import LoggingConfigurable

from ..errors import ClusterStartError
from . import diagnose, slurmctl
from . import slurm as S
from .slurmsettings import sbatch_value

__all__ = ["SlurmSite", "batch_template_of", "ClusterMLSlurmEngineSetLauncher",
           "ClusterMLSlurmControllerLauncher", "ClusterMLMPIEngineSetLauncher"]

_NONE_OK = dict(allow_none=True, config=True)


class SlurmSite(LoggingConfigurable):
    """Site settings of clusterml's Slurm jobs (the one place they are declared).

    ``account``, ``qos``, ``timelimit`` and ``queue`` (the partition) are
    ipyparallel's own ``SlurmLauncher`` settings and are used as they are.
    """

    nodes = Integer(None, help="--nodes of the engines job (None: Slurm's choice)", **_NONE_OK)
    ntasks_per_node = Integer(None, help="--ntasks-per-node of the engines job", **_NONE_OK)
    cpus_per_task = Integer(1, help="--cpus-per-task; also OMP/OPENBLAS/MKL_NUM_THREADS", **_NONE_OK)
    mem = Unicode(None, help="--mem per node, e.g. '16G'", **_NONE_OK)
    extra_sbatch = List(Unicode(), help="more sbatch options, e.g. ['--constraint=skylake']",
                        config=True)
    setup = List(Unicode(), help="shell lines run before the engines, e.g. ['module load mpich']",
                 config=True)
    venv = Unicode(None, help="a virtualenv activated in the job (None: inherit PATH)", **_NONE_OK)
    mpi = Unicode("pmi2", help="how tasks form one MPI world: pmi2 | pmix (srun --mpi=...), "
                  "mpiexec (inside the job), none (singletons: only for demonstrations)",
                  config=True)
    mpiexec = Unicode("mpiexec", help="the mpiexec for mpi='mpiexec' (must match mpi4py's MPI)",
                      config=True)
    srun_args = List(Unicode(), help="extra srun arguments, each shell-quoted", config=True)
    env = Dict(help="environment variables exported in the job for the engines "
               "(`clusterml profile install --env NAME=VALUE`), values shell-quoted",
               config=True)
    poll_interval = Float(1.0, help="seconds between two looks at the job's Slurm state",
                          config=True)
    hopeless_reasons = List(Unicode(), default_value=sorted(diagnose.HOPELESS_REASONS),
                            help="pending reasons that fail the start at once", config=True)

    def slurm_settings(self, controller: bool = False) -> S.SlurmSettings:
        """These settings (and ipyparallel's account/qos/timelimit/queue) for the renderer."""
        for name in ("options", "batch_template_file"):
            if getattr(self, name, ""):
                raise ValueError(
                    f"{type(self).__name__}.{name} is set, but clusterml renders its own batch script"
                    f" from its settings: use extra_sbatch / setup instead, or ipyparallel's "
                    f"'slurm' launcher for a template of your own")
        extra = list(self.extra_sbatch)
        if getattr(self, "qos", ""):
            extra.append(f"--qos={sbatch_value('qos', self.qos)}")
        values = dict(account=self.account or None, partition=self.queue or None,
                      time=str(self.timelimit) if self.timelimit not in ("", None) else None,
                      cpus_per_task=self.cpus_per_task, mem=self.mem, extra_sbatch=extra,
                      setup=list(self.setup), venv=self.venv, env=dict(self.env))
        if not controller:
            values.update(nodes=self.nodes, ntasks_per_node=self.ntasks_per_node, mpi=self.mpi,
                          mpiexec=self.mpiexec, srun_args=list(self.srun_args))
        return S.validate_settings(values)


class _SlurmWatched:
    """Mixin: render the script from :class:`SlurmSite`, watch the job, notify ipyparallel."""

    _controller = False
    _watch = None

    def _jobs_batch_file(self):
        """The job script goes to the profile's ``jobs/`` folder (0700), never the cwd."""
        jobs = os.path.join(self.profile_dir or ".", "jobs")
        os.makedirs(jobs, mode=0o700, exist_ok=True)
        kind = "controller" if self._controller else "engine"
        return os.path.join(jobs, f"slurm_{kind}-{self.cluster_id or 'default'}.sbatch")

    def write_batch_script(self, n=1):
        if not self.batch_file_name:
            self.batch_file = self._jobs_batch_file()
        if self.batch_template and self.batch_template != getattr(self, "_rendered", None):
            raise ValueError(f"{type(self).__name__}.batch_template is set, but clusterml renders its "
                             f"own batch script from its settings (use extra_sbatch / setup)")
        settings = self.slurm_settings(controller=self._controller)
        render = S.render_controller_batch_template if self._controller else S.render_engine_batch_template
        self.batch_template = self._rendered = render(settings)
        return super().write_batch_script(n)

    def _run_command(self, command, **kwargs):
        # sbatch's refusal goes to stderr: keep it for the error message
        return super()._run_command(command, stderr=subprocess.STDOUT, **kwargs)

    def start(self, n=1):
        try:
            job_id = super().start(n) if not self._controller else super().start()
        except subprocess.CalledProcessError as exc:
            kind = "controller" if self._controller else "engines"
            said = (exc.output or b"").decode("utf8", "replace").strip()
            raise ClusterStartError(diagnose.start_error_text(
                f"the {kind} job was refused by Slurm: {said}",
                {"cause": f"Slurm refused the request ({' '.join(map(str, exc.cmd))})",
                 "fix": "change the request: clusterml profile set NAME nodes=... cpus_per_task=... "
                        "queue=... timelimit=... (see sinfo)"})) from None
        self.watch()
        return job_id

    @classmethod
    def from_dict(cls, d, **kwargs):
        """Restore from a cluster record (``Cluster.from_file``) and watch the job again."""
        launcher = super().from_dict(d, **kwargs)
        if launcher.state == "running" and launcher.job_id:
            launcher.watch()
        return launcher

    def watch(self) -> None:
        """Ask Slurm every ``poll_interval`` s (in a thread) until the job ended or was stopped."""
        self._watch = threading.Thread(target=self._watch_job, name=f"slurm-watch-{self.job_id}",
                                       daemon=True)
        self._watch.start()

    def poll(self):
        """Ask Slurm once; notify ipyparallel if the job ended or can never run.

        Returns
        -------
        dict or None
            The stop data when the job is over (or hopeless), else None.
        """
        if not self.job_id or self.state == "after":
            return self.stop_data if self.state == "after" else None
        try:
            info = slurmctl.job_info(self.job_id, timeout=30)
        except slurmctl.SlurmError as exc:
            self.log.debug("Slurm poll of %s failed: %s", self.job_id, exc)
            return None
        self.slurm_info = info
        if info is not None and not diagnose.job_over(info, self.hopeless_reasons):
            return None
        if info is not None and info.state == "PENDING":
            try:
                slurmctl.scancel(self.job_id)  # it can never run: do not leave it queued
            except slurmctl.SlurmError as exc:
                self.log.warning("%s", exc)
        data = diagnose.stop_data(self, info)
        self.notify_stop(data)
        return data

    slurm_info = None

    def status_text(self) -> str:
        """``Slurm job 812 PENDING (Resources)``: the job's last known state."""
        info = self.slurm_info
        if info is None:
            return f"Slurm job {self.job_id}" if self.job_id else "Slurm job not submitted"
        return diagnose.job_line(info)

    def _watch_job(self):
        import time

        while self.state == "running":
            if self.poll() is not None:
                return
            time.sleep(self.poll_interval)

    def stop(self):
        try:
            return super().stop()
        finally:
            self.state = "after"  # ends the watcher


class ClusterMLSlurmEngineSetLauncher(_SlurmWatched, SlurmSite, SlurmEngineSetLauncher):
    """MPI engines as ONE Slurm job (engine id == MPI rank), watched until it ends.

    Entry point ``clusterml-slurm`` in ``ipyparallel.engine_launchers``.
    """

    entrypoint_name = "clusterml-slurm"
    batch_file_name = Unicode("", config=True, help="job script file; default: "
                              "<profile>/jobs/slurm_<kind>-<cluster id>.sbatch").tag(to_dict=True)


class ClusterMLSlurmControllerLauncher(_SlurmWatched, SlurmSite, SlurmControllerLauncher):
    """The controller as a one-task Slurm job (for sites whose login node nodes cannot reach).

    Entry point ``clusterml-slurm`` in ``ipyparallel.controller_launchers``.
    """

    entrypoint_name = "clusterml-slurm"
    batch_file_name = Unicode("", config=True, help="job script file; default: "
                              "<profile>/jobs/slurm_<kind>-<cluster id>.sbatch").tag(to_dict=True)
    _controller = True


class ClusterMLMPIEngineSetLauncher(MPIEngineSetLauncher):
    """ipyparallel's MPI engine set, with the ``mpiexec`` next to this interpreter.

    Entry point ``clusterml-mpi`` in ``ipyparallel.engine_launchers``.
    """

    entrypoint_name = "clusterml-mpi"
    env = Dict(help="environment variables for the engines (`clusterml profile install --env`)",
               config=True)
    loopback_only = Bool(False, help="keep MPI's transports (UCX, libfabric, Open MPI) on "
                         "loopback, for a controller listening on 127.0.0.1", config=True)

    @default("mpi_cmd")
    def _default_mpi_cmd(self):
        from .mpi import which_mpiexec

        return [which_mpiexec(required=True)]

    def get_env(self):
        env = dict(diagnose.LOOPBACK_MPI_ENV) if self.loopback_only else {}
        env.update(self.env)
        env.update(super().get_env())
        return env


def batch_template_of(cluster, controller: bool = False) -> str:
    """The batch template a loaded ``ipyparallel.Cluster``'s clusterml launcher renders.

    For checks that read the job script without submitting it (``clusterml
    doctor``); ``""`` when the cluster does not use a clusterml Slurm launcher.
    """
    cls = cluster.controller_launcher_class if controller else cluster.engine_launcher_class
    if not issubclass(cls, SlurmSite):
        return ""
    launcher = cls(parent=cluster, profile_dir=cluster.profile_dir, output_file=os.devnull)
    render = S.render_controller_batch_template if controller else S.render_engine_batch_template
    return render(launcher.slurm_settings(controller=controller))
