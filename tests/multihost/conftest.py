"""The three-host Slurm cluster of ``slurm/dev/multihost.sh`` for the tests in this folder.

One cluster for the whole package (fixture ``multihost``): brought up in a pytest temp folder
and ALWAYS taken down when the package's tests are done, after which the fixture checks that nothing
is left running or mounted (no namespace of its prefix, no mount under its folder, no recorded daemon).

Tests run "from the login host": code that must run there (a notebook's
``cml.Cluster(...)``, the ``clusterml`` CLI, ``srun`` / ``sbatch``) is run in the login
host's namespaces with ``multihost.sh on login ...``, as a subprocess whose output the test
reads. The pytest process itself stays outside (a threaded process cannot enter another
mount namespace).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
from helpers import ROOT, subprocess_env

from .mhhelp import BIN

SCRIPT = Path(ROOT) / "slurm" / "dev" / "multihost.sh"


@dataclass
class Multihost:
    """A running three-host cluster."""

    folder: Path
    conf: Path
    env: dict  # the environment multihost.sh runs with
    prefix: str  # namespace names are "<prefix>-<host>"
    up_seconds: float = 0.0
    timings: dict = field(default_factory=dict)
    workdir: Path | None = None  # where commands run unless told (never the checkout)

    def script(self, *args, timeout=120, check=True, env=None, cwd=None) -> subprocess.CompletedProcess:
        """Run ``multihost.sh ARGS...``; fail the test with its output if it fails."""
        p = subprocess.run(["bash", str(SCRIPT), *args], env=env or self.env, cwd=cwd,
                           capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            pytest.fail(f"multihost.sh {' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
        return p

    def on(self, host: str, *argv, timeout=300, check=True, env=None, cwd=None, **extra_env):
        """Run ``argv`` on ``host`` (login, node1, node2) in ``cwd``; returns the CompletedProcess."""
        e = dict(env or self.env)
        e.update({k: str(v) for k, v in extra_env.items()})
        return self.script("on", host, *map(str, argv), timeout=timeout, check=check, env=e,
                           cwd=cwd or self.workdir)

    def python(self, code: str, *, ipython_dir=None, timeout=300, cwd=None, check=True, **extra_env):
        """Run Python ``code`` on the login host; return the JSON its last stdout line holds.

        ``code`` prints ``json.dumps(...)`` last. On failure the test fails with the output.
        """
        if ipython_dir is not None:
            extra_env["IPYTHONDIR"] = str(ipython_dir)
        p = self.on("login", sys.executable, "-c", textwrap.dedent(code), timeout=timeout,
                    check=False, cwd=cwd, **extra_env)
        if check and p.returncode != 0:
            pytest.fail(f"login python failed ({p.returncode}):\n{p.stdout[-6000:]}\n{p.stderr[-6000:]}")
        lines = p.stdout.strip().splitlines()
        out = json.loads(lines[-1]) if lines and lines[-1].startswith(("{", "[")) else None
        return out, p

    def tty(self, argv, *, timeout=300, **extra_env) -> subprocess.CompletedProcess:
        """``argv`` on the login host with a terminal (``script``), as a user types it: progress
        lines written for terminals show up; stdout and stderr arrive together in ``stdout``."""
        import shlex

        return self.on("login", "script", "-qefc", shlex.join(map(str, argv)), "/dev/null",
                       timeout=timeout, check=False, **extra_env)

    def clusterml(self, *args, ipython_dir, timeout=300, check=True, cwd=None):
        """``clusterml ARGS...`` on the login host (the installed console script of this venv)."""
        return self.on("login", os.path.join(BIN, "clusterml"), *args, timeout=timeout, check=check,
                       cwd=cwd, IPYTHONDIR=ipython_dir)

    def squeue(self) -> list[str]:
        p = self.on("login", "squeue", "-h", "-o", "%i %T %r")
        return [line for line in p.stdout.splitlines() if line.strip()]

    def wait_no_jobs(self, timeout=60) -> list[str]:
        deadline = time.monotonic() + timeout
        while (jobs := self.squeue()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return jobs

    def daemons(self) -> dict[int, str]:
        """pid -> name of the daemons ``up`` started (munged, slurmctld, 2 x slurmd)."""
        rows = (self.folder / "started.pids").read_text().split("\n")
        return {int(pid): name for name, pid in (r.split() for r in rows if r.strip())}

    def netns_inode(self) -> set[int]:
        out = set()
        for p in Path("/run/netns").glob(self.prefix + "-*"):
            try:
                out.add(os.stat(p).st_ino)
            except OSError:
                pass
        return out

    def processes(self) -> list[psutil.Process]:
        """Every process inside the cluster's hosts, but the daemons ``up`` started (and slurmscriptd)."""
        inodes, daemons, out = self.netns_inode(), self.daemons(), []
        for proc in psutil.process_iter(["pid", "name"]):
            try:
                ino = os.stat(f"/proc/{proc.pid}/ns/net").st_ino
            except OSError:
                continue
            if ino not in inodes or proc.pid in daemons:
                continue
            try:  # slurmctld's own helper process
                if proc.info["name"] == "slurmscriptd" and daemons.get(proc.ppid()) == "slurmctld":
                    continue
            except psutil.Error:
                continue
            out.append(proc)
        return out

    def wait_no_processes(self, timeout=30) -> list[str]:
        deadline = time.monotonic() + timeout
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.5)
        return [f"{p.pid} {p.info['name']}" for p in left]


def _prefix_of(folder: Path) -> str:
    import hashlib

    return "cmlmh-" + hashlib.md5(str(folder).encode()).hexdigest()[:8]


def leftovers(folder: Path, prefix: str, pids: dict) -> list[str]:
    """What a ``down`` must not leave: namespaces, mounts, daemons of this instance."""
    left = ([f"netns {p.name}" for p in Path("/run/netns").glob(prefix + "-*")]
            if Path("/run/netns").is_dir() else [])
    with open("/proc/self/mountinfo") as f:
        left += [f"mount {line.split()[4]}" for line in f if line.split()[4].startswith(str(folder) + "/")]
    for pid, name in pids.items():
        try:
            if psutil.Process(pid).name() == name:
                left.append(f"process {pid} {name}")
        except psutil.Error:
            pass
    return left


@pytest.fixture(scope="package")
def multihost(tmp_path_factory):
    """``multihost.sh up`` in a temp folder; ``down`` at the end, whatever happened."""
    if os.geteuid() != 0:
        pytest.skip("the three-host cluster needs root (namespaces, slurmd, munged)")
    folder = tmp_path_factory.mktemp("multihost")
    env = subprocess_env(CLUSTERML_MULTIHOST_DIR=folder, CLUSTERML_MULTIHOST_TIMEOUT=60)
    # jobs inherit the environment (--export=ALL): this venv's python and mpiexec first
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env["SLURM_CONF"] = str(folder / "slurm.conf")
    mh = Multihost(folder, folder / "slurm.conf", env, _prefix_of(folder))
    mh.workdir = tmp_path_factory.mktemp("login-cwd")
    t0 = time.monotonic()
    pids: dict = {}
    try:
        p = mh.script("up", timeout=900, check=False)
        mh.up_seconds = time.monotonic() - t0
        if p.returncode != 0:
            pytest.fail(f"multihost.sh up failed ({p.returncode}):\n{p.stderr[-5000:]}")
        assert p.stdout.strip().splitlines()[-1] == f"export SLURM_CONF={mh.conf}", p.stdout
        pids = mh.daemons()
        yield mh
    finally:
        pids = pids or (mh.daemons() if (folder / "started.pids").exists() else {})
        t0 = time.monotonic()
        down = subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, text=True,
                              timeout=300)
        down_s = time.monotonic() - t0
        again = subprocess.run(["bash", str(SCRIPT), "down"], env=env, capture_output=True, text=True,
                               timeout=120)
        left = leftovers(folder, mh.prefix, pids)
        print(f"\n[multihost] up {mh.up_seconds:.2f} s, down {down_s:.2f} s; "
              + " ".join(f"{k} {v:.1f} s;" for k, v in mh.timings.items()), file=sys.stderr)
        # the session's finaliser check: a failure here fails the run (error in teardown)
        assert down.returncode == 0 and again.returncode == 0, down.stderr + again.stderr
        assert left == [], f"left after multihost.sh down: {left}"


@pytest.fixture(scope="package")
def slurm_profile(multihost, tmp_path_factory):
    """An IPYTHONDIR with the profiles installed by ``clusterml profile install`` on login."""
    d = tmp_path_factory.mktemp("ipython")
    os.chmod(d, 0o700)
    p = multihost.clusterml("profile", "install", "--partition", "debug", "--time", "00:10:00",
                            ipython_dir=d)
    assert "installed clusterml-slurm" in p.stdout, p.stdout + p.stderr
    return d
