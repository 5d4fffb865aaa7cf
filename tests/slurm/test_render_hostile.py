"""Hostile values in batch scripts that test_render.py does not cover: srun arguments, the
mpiexec path, and the values ipyparallel itself substitutes into our templates (cluster id,
output file) -- the facade refuses those that would break out of the script."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clusterml.launch import slurm as S

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
HOSTILE = ["$(touch pwned)", "`touch pwned`", "; touch pwned", "a b", "it's", 'q"q', "{n}", "\\"]

PRINT_ARGS = """#!/bin/bash
printf '%s|' "$@"
"""


def test_srun_arguments_arrive_literally(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text(PRINT_ARGS)
    (fake / "srun").chmod(0o755)
    text = S.render_spmd_script({"srun_args": HOSTILE}, ["prog"])
    script = S.write_batch_script(text, tmp_path / "jobs", "job.sh")
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, cwd=tmp_path,
                       env={"PATH": f"{fake}:/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    assert r.stdout == "|".join(["--mpi=pmi2", *HOSTILE, "prog"]) + "|"
    assert not (tmp_path / "pwned").exists()


def test_hostile_mpiexec_path_is_one_word(tmp_path):
    text = S.render_spmd_script({"mpi": "mpiexec", "mpiexec": "/x/$(touch pwned); touch pwned"},
                                ["prog"])
    script = S.write_batch_script(text, tmp_path / "jobs", "job.sh")
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=30, cwd=tmp_path,
                       env={"PATH": "/usr/bin:/bin", "SLURM_NTASKS": "2"})
    assert r.returncode != 0 and "No such file" in r.stderr  # one (missing) program, not a command line
    assert not (tmp_path / "pwned").exists()


def test_ipyparallel_substitutes_cluster_id_raw(tmp_path):
    """Why the facade checks the cluster id: ipyparallel formats it into --job-name/--output."""
    from ipyparallel.cluster.launcher import SlurmEngineSetLauncher

    launcher = SlurmEngineSetLauncher(work_dir=".", batch_template=S.render_engine_batch_template({}),
                                      batch_file_name=str(tmp_path / "e.sbatch"),
                                      profile_dir=str(tmp_path / "p"), cluster_id='x"\necho pwned #')
    launcher.write_batch_script(2)
    assert "\necho pwned" in (tmp_path / "e.sbatch").read_text()


@pytest.mark.parametrize("cluster_id", ['x"\n#SBATCH --uid=0\necho pwned #', "a b", "$(id)", "-x"])
def test_facade_refuses_a_cluster_id_that_breaks_the_batch_script(cluster_id, ipython_dir, tmp_path,
                                                                   monkeypatch):
    import clusterml as cml

    monkeypatch.chdir(tmp_path)
    from clusterml.launch import profiles as P

    P.install(["clusterml-slurm"])
    cluster = cml.Cluster(n=2, profile="clusterml-slurm", cluster_id=cluster_id, start=False)
    with pytest.raises(cml.ParameterError, match=r"cluster_id=.*batch script"):
        cluster.start()
    assert not list((ipython_dir / "profile_clusterml-slurm" / "jobs").iterdir())
    assert not cluster.running
