"""``clusterml run -n N script.py [args]`` on a real local cluster of MPI engines: the script gets
``cml.Cluster.current()``, its arguments and its exit status; nothing is left running after."""

import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from helpers import subprocess_env

SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    import clusterml as cml
    from helper_mod import offset   # a module next to the script: importable on the engines too

    def task(x):
        return x * x + offset(x)

    cluster = cml.Cluster.current()
    assert cml.Cluster.current() is cluster
    print("engines", len(cluster), "args", sys.argv[1:], flush=True)
    print("map", cluster.map(task, range(6)), flush=True)
    X = np.arange(12.0).reshape(6, 2) ** 2
    cov = cluster.covariance().compute(X).covariance   # the SPMD algorithms on the same engines
    print("cov ok", bool(np.allclose(cov, np.cov(X.T))), flush=True)
    sys.exit(int(sys.argv[1]))
''')


def _ours(ipython_dir):
    out = []
    for p in psutil.process_iter(["pid", "name"]):
        try:
            env = p.environ()
        except psutil.Error:
            continue
        if env.get("IPYTHONDIR") == ipython_dir and p.pid != os.getpid():
            out.append((p.pid, p.info["name"]))
    return out


@pytest.mark.timeout(300)
def test_run_script_with_its_cluster_and_status(tmp_path):
    (tmp_path / "job.py").write_text(SCRIPT)
    (tmp_path / "helper_mod.py").write_text("def offset(x):\n    return 100\n")
    ipy = str(tmp_path / "ipython")
    env = subprocess_env(IPYTHONDIR=ipy)
    proc = subprocess.run([sys.executable, "-m", "clusterml", "run", "-n", "2", str(tmp_path / "job.py"),
                           "7", "--flag"], cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=240)
    out = proc.stdout
    assert proc.returncode == 7, out[-3000:] + proc.stderr[-3000:]
    assert "engines 2 args ['7', '--flag']" in out
    assert "map [100, 101, 104, 109, 116, 125]" in out
    assert "cov ok True" in out
    deadline = time.monotonic() + 20
    while _ours(ipy) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert _ours(ipy) == [], "clusterml run left processes behind"


def test_run_reports_errors_without_a_cluster(tmp_path):
    env = subprocess_env(IPYTHONDIR=str(tmp_path / "ipython"))
    proc = subprocess.run([sys.executable, "-m", "clusterml", "run", "-n", "2", str(tmp_path / "nope.py")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no script" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", "import clusterml as cml; cml.Cluster.current()"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "clusterml run -n N script.py" in proc.stderr


def test_empty_cluster_id_is_printed_as_the_default():
    from clusterml.launch.commands import _cid

    assert _cid("") == "'' (the default id)" and _cid(None) == "'' (the default id)"
    assert _cid("one") == "'one'"


@pytest.mark.timeout(420)
def test_run_inside_a_slurm_job(live_slurm, tmp_path):
    """The one-job pattern of slurm/farm.sbatch.example on the dev Slurm: client and engines in one
    allocation, engines as many as its tasks, the job's exit status is the script's."""
    (tmp_path / "job.py").write_text(SCRIPT)
    (tmp_path / "helper_mod.py").write_text("def offset(x):\n    return 100\n")
    out = tmp_path / "farm.out"
    batch = tmp_path / "farm.sbatch"
    batch.write_text(
        "#!/bin/bash\n"
        f"#SBATCH --ntasks=2\n#SBATCH --time=5\n#SBATCH --partition={live_slurm.partition}\n"
        f"#SBATCH --output={out}\n#SBATCH --export=ALL\n"
        f"export IPYTHONDIR={tmp_path / 'ipython'}\n"
        f"exec {sys.executable} -m clusterml run job.py 5 slurm\n")
    proc = subprocess.run(["sbatch", "--wait", f"--chdir={tmp_path}", str(batch)],
                          env=subprocess_env(), capture_output=True, text=True, timeout=360)
    text = out.read_text() if out.exists() else ""
    assert proc.returncode == 5, proc.stdout + proc.stderr + text[-4000:]
    assert "engines 2 args ['5', 'slurm']" in text, text[-4000:]
    assert "map [100, 101, 104, 109, 116, 125]" in text and "cov ok True" in text, text[-4000:]
