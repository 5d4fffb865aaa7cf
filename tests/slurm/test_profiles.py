"""The ipyparallel profiles: their config as loaded by ipyparallel, and the local one for real."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def P_settings(**kw):
    from clusterml.launch.profiles import ProfileSettings

    return ProfileSettings(**kw)


def install(name: str, ipython_dir: Path, settings=None) -> Path:
    from clusterml.launch import profiles as P

    (res,) = P.install([name], settings, ipython=ipython_dir)
    return res.path


def load(profile: str):
    import ipyparallel as ipp

    return ipp.Cluster(profile=profile, log_level=40)


def template(cluster, controller: bool = False) -> str:
    """The batch template clusterml's launcher renders from the profile's settings."""
    from clusterml.launch import slurm as S

    cls = cluster.controller_launcher_class if controller else cluster.engine_launcher_class
    launcher = cls(parent=cluster, profile_dir=cluster.profile_dir)
    render = S.render_controller_batch_template if controller else S.render_engine_batch_template
    return render(launcher.slurm_settings(controller=controller))


@pytest.mark.timeout(60)
def test_slurm_profile_config(ipython_dir):
    d = install("clusterml-slurm", ipython_dir)
    cluster = load("clusterml-slurm")
    assert cluster.engine_launcher_class.__name__ == "ClusterMLSlurmEngineSetLauncher"
    assert cluster.controller_launcher_class.__name__ == "LocalControllerLauncher"
    assert cluster.controller_ip == "*" and cluster.engine_timeout == 300
    tmpl = template(cluster)
    assert "#SBATCH --ntasks={n}\n" in tmpl and "#SBATCH --export=ALL\n" in tmpl
    assert "exec srun --mpi=pmi2 --cpus-per-task=1 {program_and_args} --mpi\n" in tmpl
    assert "#SBATCH --time=01:00:00\n" in tmpl
    launcher = cluster.engine_launcher_class(parent=cluster, profile_dir=str(d), cluster_id="abc")
    launcher.program = ["ipengine"]
    launcher.write_batch_script(2)
    assert launcher.batch_file == str(d / "jobs" / "slurm_engine-abc.sbatch")
    assert (d / "jobs").stat().st_mode & 0o777 == 0o700


@pytest.mark.timeout(60)
def test_slurm_profile_site_settings_and_controller_on_compute_node(ipython_dir):
    install(
        "clusterml-slurm",
        ipython_dir,
        P_settings(slurm=dict(account="proj 1", partition="batch", setup=["module load mpich"],
                              mpi="mpiexec"),
                   controller=dict(interface="lo", on_compute_node=True)),
    )
    cluster = load("clusterml-slurm")
    tmpl = template(cluster)
    assert '#SBATCH --account="proj 1"\n' in tmpl and "#SBATCH --partition=batch\n" in tmpl
    assert "module load mpich\n" in tmpl
    assert 'exec mpiexec -n "${{SLURM_NTASKS}}" {program_and_args} --mpi\n' in tmpl
    assert cluster.controller_location == "127.0.0.1"
    assert cluster.controller_launcher_class.__name__ == "ClusterMLSlurmControllerLauncher"
    ctl = template(cluster, controller=True)
    assert "#SBATCH --ntasks=1\n" in ctl and ctl.rstrip().endswith("exec {program_and_args}")


@pytest.mark.timeout(60)
def test_local_profile_config(ipython_dir):
    install("clusterml-local", ipython_dir)
    cluster = load("clusterml-local")
    assert cluster.engine_launcher_class.__name__ == "ClusterMLMPIEngineSetLauncher"
    assert cluster.controller_ip == "127.0.0.1"
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    expected = here if os.access(here, os.X_OK) else (shutil.which("mpiexec") or "mpiexec")
    assert cluster.engine_launcher_class(parent=cluster).mpi_cmd == [expected]


@pytest.mark.timeout(240)
def test_local_profile_starts_mpi_engines_with_id_equal_rank(ipython_dir, tmp_path, monkeypatch):
    import ipyparallel as ipp

    monkeypatch.chdir(tmp_path)
    install("clusterml-local", ipython_dir)
    cluster = ipp.Cluster(n=3, profile="clusterml-local", cluster_id="cmllocal", engine_timeout=120)
    try:
        t0 = time.monotonic()
        rc = cluster.start_and_connect_sync()
        print(f"\n3 local MPI engines registered in {time.monotonic() - t0:.1f} s")
        dv = rc[:]
        dv.execute(
            "from mpi4py import MPI\n"
            "_cml = (MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size())",
            block=True,
        )
        got = dict(zip(dv.targets, dv.pull("_cml").get(timeout=60), strict=True))
        assert got == {0: (0, 3), 1: (1, 3), 2: (2, 3)}
        rc.close()
    finally:
        cluster.stop_cluster_sync()
