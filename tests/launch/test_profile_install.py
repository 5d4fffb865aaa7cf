"""``clusterml profile install``: files, modes, settings, hostile values, one source of truth."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, subprocess_env

from clusterml.launch import profiles as P

REPO = Path(ROOT)


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def cli(*args, env=None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "clusterml", *args], capture_output=True, text=True,
        env=env or subprocess_env(), timeout=120, **kw,
    )


def load(profile: str):
    import ipyparallel as ipp

    return ipp.Cluster(profile=profile, log_level=40)


def engine_template(cluster) -> str:
    """The batch template clusterml's launcher renders from a loaded profile's settings."""
    from clusterml.launch import slurm as S

    launcher = cluster.engine_launcher_class(parent=cluster, profile_dir=cluster.profile_dir)
    return S.render_engine_batch_template(launcher.slurm_settings())


@pytest.mark.timeout(120)
def test_install_writes_both_profiles_with_modes_and_settings(ipython_dir, tmp_path):
    os.chmod(ipython_dir, 0o755)  # install tightens it: connection files live below
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    r = cli(
        "profile", "install", "--account", "proj1", "--partition", "batch", "--time", "00:20:00",
        "--nodes", "2", "--ntasks-per-node", "2", "--cpus-per-task", "3", "--mem", "4G",
        "--sbatch=--qos=debug", "--sbatch=--constraint=skylake", "--setup", "module load mpich",
        "--setup", "echo ready", "--mpi", "mpiexec", "--controller-ip", "*",
        "--controller-interface", "lo", "--engine-timeout", "77", "--env", "FI_TCP_IFACE=lo",
        "--env", "CML_X=a b",
        env=subprocess_env(IPYTHONDIR=str(ipython_dir)), cwd=cwd,
    )
    assert r.returncode == 0, r.stderr
    assert list(cwd.iterdir()) == []  # nothing in the cwd
    assert mode(ipython_dir) == 0o700
    for name in P.PROFILE_NAMES:
        d = ipython_dir / f"profile_{name}"
        assert mode(d) == 0o700
        for sub in ("security", "jobs", "log"):
            assert mode(d / sub) == 0o700, sub
        assert mode(d / "ipcluster_config.json") == 0o600
        assert str(d / "ipcluster_config.json") in r.stdout

    values = P.read_settings((ipython_dir / "profile_clusterml-slurm" / "ipcluster_config.json").read_text())
    assert values["SlurmLauncher"] == dict(account="proj1", queue="batch", timelimit="00:20:00")
    assert values["SlurmSite"] == dict(
        nodes=2, ntasks_per_node=2, cpus_per_task=3, mem="4G",
        extra_sbatch=["--qos=debug", "--constraint=skylake"], setup=["module load mpich", "echo ready"],
        mpi="mpiexec", env={"FI_TCP_IFACE": "lo", "CML_X": "a b"},
    )
    assert (values["Cluster"]["controller_ip"] == "*"
            and values["Cluster"]["controller_location"] == "127.0.0.1")
    assert values["Cluster"]["engine_timeout"] == 77
    local = P.read_settings((ipython_dir / "profile_clusterml-local" / "ipcluster_config.json").read_text())
    assert local["Cluster"]["controller_ip"] == "*" and local["Cluster"]["engine_timeout"] == 77
    assert local["ClusterMLMPIEngineSetLauncher"]["env"] == {"FI_TCP_IFACE": "lo", "CML_X": "a b"}

    # what ipyparallel makes of it
    cluster = load("clusterml-slurm")
    assert cluster.engine_launcher_class.__name__ == "ClusterMLSlurmEngineSetLauncher"
    tmpl = engine_template(cluster)
    for line in ("#SBATCH --account=proj1", "#SBATCH --partition=batch", "#SBATCH --time=00:20:00",
                 "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=2", "#SBATCH --cpus-per-task=3",
                 "#SBATCH --mem=4G", "#SBATCH --qos=debug", "#SBATCH --constraint=skylake",
                 "module load mpich", "echo ready", "export OMP_NUM_THREADS=3",
                 "export FI_TCP_IFACE=lo", "export CML_X='a b'"):
        assert line + "\n" in tmpl, line
    assert 'exec mpiexec -n "${{SLURM_NTASKS}}" {program_and_args} --mpi\n' in tmpl
    assert cluster.controller_ip == "*" and cluster.controller_location == "127.0.0.1"
    assert cluster.engine_timeout == 77
    assert load("clusterml-local").controller_ip == "*"


@pytest.mark.timeout(120)
def test_hostile_values_are_quoted_or_refused(ipython_dir, tmp_path):
    marker = tmp_path / "pwned"
    evil_py = f'x", __import__("os").system("touch {marker}"), "'
    res = P.install(
        ["clusterml-slurm"],
        P.ProfileSettings(
            slurm=dict(account="a b;$(touch " + str(marker) + ") `id` #c",
                       setup=[evil_py, "echo '$HOME' \"q\""],
                       extra_sbatch=["--comment=" + "x'y"]),
        ),
    )
    cfg = res[0].config
    text = cfg.read_text()
    values = P.read_settings(text)
    assert values["SlurmLauncher"]["account"] == "a b;$(touch " + str(marker) + ") `id` #c"
    assert values["SlurmSite"]["setup"] == [evil_py, "echo '$HOME' \"q\""]
    cluster = load("clusterml-slurm")  # loads the config: no injected code may run
    tmpl = engine_template(cluster)
    assert f'#SBATCH --account="a b;$(touch {marker}) `id` #c"\n' in tmpl
    assert not marker.exists()

    before = text
    for bad in (
        dict(slurm=dict(partition="batch\n#SBATCH --account=other")),  # newline in #SBATCH
        dict(slurm=dict(account='say "hi"')),  # '"' cannot be read back by sbatch
        dict(slurm=dict(setup=["ok", "two\nlines"])),
        dict(slurm=dict(time="soon")),
        dict(slurm=dict(nodes=0)),
        dict(slurm=dict(mpi="magic")),
        dict(controller=dict(ip="1.2.3.4; rm -rf ~")),
        dict(controller=dict(interface="eth0 && id")),
        dict(engine_timeout=-1),
        dict(env={"BAD NAME": "x"}),
        dict(slurm=dict(qos="a\nb")),
    ):
        with pytest.raises(ValueError):
            P.install(["clusterml-slurm"], P.ProfileSettings(**bad), force=True)
        assert cfg.read_text() == before, bad  # nothing written

    # through the command line: refused with the value named, exit code 1
    r = cli("profile", "install", "--partition", "a\nb", "--force",
            env=subprocess_env(IPYTHONDIR=str(ipython_dir)))
    assert r.returncode == 1 and "partition" in r.stderr and "newline" in r.stderr, r.stderr
    assert cfg.read_text() == before


@pytest.mark.timeout(60)
def test_existing_config_needs_force_and_is_kept(ipython_dir):
    P.install(["clusterml-slurm"], P.ProfileSettings(slurm=dict(partition="one")))
    with pytest.raises(ValueError, match="--force"):
        P.install(["clusterml-slurm"], P.ProfileSettings(slurm=dict(partition="two")))
    P.install(["clusterml-slurm"], P.ProfileSettings(slurm=dict(partition="one")))  # same: fine
    (res,) = P.install(["clusterml-slurm"], P.ProfileSettings(slurm=dict(partition="two")), force=True)
    assert res.backup is not None and mode(res.backup) == 0o600
    assert P.read_settings(res.backup.read_text())["SlurmLauncher"]["queue"] == "one"
    assert P.read_settings(res.config.read_text())["SlurmLauncher"]["queue"] == "two"


@pytest.mark.timeout(60)
def test_profile_set_changes_one_setting_and_keeps_the_others(ipython_dir):
    P.install(["clusterml-slurm"], P.ProfileSettings(slurm=dict(partition="one", nodes=2),
                                                    env={"A": "1"}))
    r = cli("profile", "set", "clusterml-slurm", "controller_ip=10.1.2.3", "account=123",
            'env={"B": "x y"}', "SlurmLauncher.qos=normal",
            env=subprocess_env(IPYTHONDIR=str(ipython_dir)))
    assert r.returncode == 0, r.stderr
    cluster = load("clusterml-slurm")
    assert cluster.controller_ip == "10.1.2.3" and cluster.engine_timeout == 300
    tmpl = engine_template(cluster)
    for line in ("#SBATCH --partition=one", "#SBATCH --nodes=2", "#SBATCH --account=123",
                 "#SBATCH --qos=normal", "export A=1", "export B='x y'"):
        assert line + "\n" in tmpl, line
    before = (ipython_dir / "profile_clusterml-slurm" / "ipcluster_config.json").read_text()
    for bad in ("nodes=0", "nosuchkey=1", "controller_ip=1.2.3.4;id", "mem=lots", "x"):
        r = cli("profile", "set", "clusterml-slurm", bad, env=subprocess_env(IPYTHONDIR=str(ipython_dir)))
        assert r.returncode == 1 and "clusterml: error:" in r.stderr, (bad, r.stderr)
    assert (ipython_dir / "profile_clusterml-slurm" / "ipcluster_config.json").read_text() == before


@pytest.mark.timeout(60)
def test_slurm_settings_are_refused_for_the_local_profile_alone(ipython_dir):
    r = cli("profile", "install", "--name", "clusterml-local", "--partition", "x",
            env=subprocess_env(IPYTHONDIR=str(ipython_dir)))
    assert r.returncode == 1 and "clusterml-slurm only" in r.stderr, r.stderr
    assert not (ipython_dir / "profile_clusterml-local").exists()
    r = cli("profile", "install", "--name", "clusterml-local", "--mpiexec", "/opt/mpi/bin/mpiexec",
            env=subprocess_env(IPYTHONDIR=str(ipython_dir)))
    assert r.returncode == 0, r.stderr
    assert load("clusterml-local").config.MPIEngineSetLauncher.mpi_cmd == ["/opt/mpi/bin/mpiexec"]
    r = cli("profile", "list", env=subprocess_env(IPYTHONDIR=str(ipython_dir)))
    assert "clusterml-local  installed" in r.stdout and "clusterml-slurm  not installed" in r.stdout


def test_templates_have_one_source_shipped_as_data_files():
    """``profiles/`` is the one copy of the templates: values only, shipped as data files."""
    import json

    import tomllib

    copies = sorted(p.relative_to(REPO) for p in REPO.rglob("ipcluster_config.*")
                    if ".venv" not in p.parts and ".git" not in p.parts)
    assert copies == [Path("profiles") / n / "ipcluster_config.json" for n in P.PROFILE_NAMES], copies
    for name in P.PROFILE_NAMES:
        assert P.template_dir(name) == REPO / "profiles" / name
        json.loads((REPO / "profiles" / name / "ipcluster_config.json").read_text())  # values, no code
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())
    data = conf["tool"]["setuptools"]["data-files"]
    for name in P.PROFILE_NAMES:
        assert data[f"share/clusterml/profiles/{name}"] == [f"profiles/{name}/ipcluster_config.json"]
    eps = conf["project"]["entry-points"]
    assert eps["ipyparallel.engine_launchers"]["clusterml-slurm"].endswith(":ClusterMLSlurmEngineSetLauncher")
