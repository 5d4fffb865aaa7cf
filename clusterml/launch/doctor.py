"""``clusterml doctor``: check the MPI / Slurm / ipyparallel setup and say how to fix it.

Every check returns a :class:`Check` with ``status`` ``ok``, ``warning``,
``problem`` or ``skipped``, a one-line summary, details and a fix. The checks
run real things rather than guessing from configuration:

- ``mpi4py``: the MPI library mpi4py loads (in a child Python, so this process
  never initialises MPI), and the ``libmpi`` file it mapped;
- ``mpiexec-path`` / ``mpiexec-python``: the ``mpiexec`` on ``PATH`` and the one
  next to the interpreter, identified by ``mpiexec --version``, against that
  library (a different vendor's mpiexec starts singletons or kills engines);
- ``mpiexec-world``: ``mpiexec -n 2`` with the mpiexec the local profile uses
  gives ONE world of size 2;
- ``slurm``: ``sinfo`` answers;
- ``profiles``: clusterml-local / clusterml-slurm installed and loadable;
- ``srun-world`` and ``controller-address`` (:mod:`clusterml.launch.doctor_slurm`):
  a 2-task job rendered from the Slurm profile's own engine template (its MPI mode,
  setup lines, account, ...), one task on each of two nodes whenever the partition
  has two, runs a probe that reports its MPI world and connects to a socket opened
  here on the address engines would use for the controller (and to this host's
  other addresses, so a multi-homed login host is named with the address to use);
- ``connection-files``: ``security/`` folders 0700 and files 0600 in every
  profile of the IPython directory.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from .probes import PROBE, STATUSES, Check, _first_lines, _read_probes, _run, _world_verdict  # noqa: F401
from .profiles import CONFIG, PROFILE_NAMES, ipython_dir, profile_dir

__all__ = ["Check", "run_checks", "print_report", "print_progress", "mpi_family", "PROBE"]

_INFO = r"""
import json, os
import mpi4py
from mpi4py import MPI
lib = ""
try:
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split()[-1]
            if "libmpi" in os.path.basename(p):
                lib = p
                break
except OSError:
    pass
print(json.dumps({"library": MPI.Get_library_version().strip().splitlines()[0].strip(),
                  "mpi4py": mpi4py.__version__, "libmpi": lib}))
"""


def mpi_family(text: str) -> str | None:
    """``"mpich"`` (MPICH, Intel MPI, MVAPICH, Cray: Hydra / PMI), ``"openmpi"``, or None."""
    t = text.lower()
    if "open mpi" in t or "openrte" in t or "open-mpi" in t:
        return "openmpi"
    if any(w in t for w in ("mpich", "hydra", "intel(r) mpi", "mvapich", "cray")):
        return "mpich"
    return None


def check_mpi4py() -> tuple[Check, dict]:
    rc, out = _run([sys.executable, "-c", _INFO], timeout=60)
    if rc != 0:
        return Check("mpi4py", "problem", "mpi4py cannot load an MPI library", _first_lines(out, 8),
                     "install mpi4py and an MPI (pip install mpi4py mpich), or load your site's MPI module "
                     "before starting Python"), {}
    info = json.loads(out.strip().splitlines()[-1])
    info["family"] = mpi_family(info["library"])
    return Check("mpi4py", "ok", f"mpi4py {info['mpi4py']} uses {info['library']}",
                 f"libmpi: {info['libmpi'] or '?'}; interpreter: {sys.executable}"), info


def _mpiexec_version(path: str) -> tuple[str | None, str]:
    _rc, out = _run([path, "--version"], timeout=30)
    return mpi_family(out), _first_lines(out)


def check_mpiexecs(info: dict) -> list[Check]:
    lib_family = info.get("family")
    lib = info.get("library", "?")
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    here_ok = os.access(here, os.X_OK)
    on_path = shutil.which("mpiexec")
    checks = []
    bindir = os.path.dirname(sys.executable)
    if on_path is None:
        checks.append(Check(
            "mpiexec-path", "problem", "no mpiexec on PATH",
            f"mpi4py uses {lib}. Plain SPMD jobs (mpiexec -n 4 python job.py) and the Slurm "
            "profile's mpi='mpiexec' mode need one.",
            f"export PATH={shlex.quote(bindir)}:$PATH" if here_ok else
            "install the MPI mpi4py uses (pip install mpich) or load its module",
        ))
    else:
        fam, ver = _mpiexec_version(on_path)
        same = here_ok and os.path.realpath(on_path) == os.path.realpath(here)
        if lib_family is not None and fam == lib_family:
            checks.append(Check("mpiexec-path", "ok",
                                f"mpiexec on PATH ({on_path}) matches mpi4py's MPI ({fam})", ver))
        else:
            checks.append(Check(
                "mpiexec-path", "problem",
                f"mpiexec on PATH ({on_path}) is {fam or 'unknown'}, but mpi4py uses {lib}",
                f"`{on_path} --version`: {ver or '(no output)'}. A different MPI's mpiexec starts every "
                "rank as a singleton (world size 1) or makes engines die at start (exit code 16).",
                (f"export PATH={shlex.quote(bindir)}:$PATH  (or pass --mpiexec {here} to "
                 "clusterml profile install)") if here_ok and not same else
                "put the mpiexec of the MPI mpi4py loads first on PATH",
            ))
    if here_ok:
        fam, ver = _mpiexec_version(here)
        if lib_family is not None and fam == lib_family:
            checks.append(Check("mpiexec-python", "ok",
                                f"{here} matches mpi4py's MPI ({fam}); the local profile uses it", ver))
        else:
            checks.append(Check("mpiexec-python", "problem",
                                f"{here} is {fam or 'unknown'}, but mpi4py uses {lib}", ver,
                                "reinstall the mpich wheel or mpi4py so they match"))
    else:
        checks.append(Check("mpiexec-python", "ok", f"no mpiexec next to {sys.executable}; PATH's is used"))
    return checks


def check_mpiexec_world(timeout: float) -> Check:
    from .mpi import mpiexec_for_this_python

    mpiexec = mpiexec_for_this_python()
    with tempfile.TemporaryDirectory(prefix="clusterml-doctor-") as d:
        probe = os.path.join(d, "probe.py")
        Path(probe).write_text(PROBE)
        out = os.path.join(d, "out")
        os.mkdir(out)
        argv = [mpiexec, "-n", "2", sys.executable, probe, out]
        rc, text = _run(argv, timeout=timeout)
        verdict, desc = _world_verdict(_read_probes(out), 2)
    cmd = shlex.join(argv[:4]) + " probe.py"
    if verdict == "one":
        return Check("mpiexec-world", "ok", f"`{cmd}` gives one world of size 2", desc)
    if verdict == "singletons":
        return Check("mpiexec-world", "problem", f"`{cmd}` gives 2 singletons, not one world", desc,
                     "use the mpiexec of the MPI mpi4py loads (see mpiexec-path)")
    return Check("mpiexec-world", "problem", f"`{cmd}` did not give one world of size 2",
                 f"exit code {rc}; {desc}; output: {_first_lines(text, 6)}",
                 "see mpiexec-path / mpi4py above; run the command by hand to see the error")


# ----------------------------------------------------------------------------- profiles
def _load_profile(name: str):
    import logging

    import ipyparallel as ipp

    return ipp.Cluster(profile_dir=str(profile_dir(name)), log_level=logging.ERROR)


def check_profiles(slurm_up: bool) -> tuple[list[Check], dict]:
    checks, loaded = [], {}
    for name in PROFILE_NAMES:
        d = profile_dir(name)
        if not (d / CONFIG).exists():
            needed = name == "clusterml-local" or slurm_up
            checks.append(Check(
                f"profile {name}", "problem" if needed else "skipped", f"{name} is not installed ({d})",
                fix=f"clusterml profile install --name {name}  (add your site settings, see --help)",
            ))
            continue
        try:
            cluster = _load_profile(name)
            _ = cluster.engine_launcher_class  # resolve (imports the launcher)
        except Exception as e:
            checks.append(Check(f"profile {name}", "problem", f"{name} does not load",
                                f"{type(e).__name__}: {e}",
                                f"fix {d / CONFIG} or reinstall: clusterml profile install --force"))
            continue
        loaded[name] = cluster
        checks.append(Check(f"profile {name}", "ok", f"{name} installed and loads",
                            f"{d}; engines: {cluster.engine_launcher_class.__name__}"))
    return checks, loaded


# ----------------------------------------------------------------------------- files
def check_connection_files() -> Check:
    base = ipython_dir()
    bad = []
    for sec in sorted(base.glob("profile_*/security")):
        if not sec.is_dir():
            continue
        m = sec.stat().st_mode & 0o777
        if m != 0o700:
            bad.append((str(sec), m, 0o700))
        for p in sorted(sec.iterdir()):
            if p.is_file() and (p.stat().st_mode & 0o777) != 0o600:
                bad.append((str(p), p.stat().st_mode & 0o777, 0o600))
    if not bad:
        return Check("connection-files", "ok", f"security folders 0700 and files 0600 under {base}")
    fixes = [f"chmod {want:o} {shlex.quote(p)}" for p, _, want in bad]
    return Check("connection-files", "problem",
                 f"{len(bad)} connection file(s)/folder(s) readable by others under {base}",
                 "; ".join(f"{p} is {m:o}" for p, m, _ in bad[:10]),
                 "; ".join(fixes[:10]))


# ----------------------------------------------------------------------------- driver
def run_checks(profile: str | None = None, slurm: str = "auto", timeout: float = 120,
               progress=None) -> list[Check]:
    """Run every check and return the verdicts in order.

    Parameters
    ----------
    profile : str, optional
        Unused name override for the Slurm profile (only ``clusterml-slurm`` today).
    slurm : {"auto", "yes", "no"}
        Run the Slurm checks when sinfo exists (auto), always, or never.
    timeout : float
        Seconds per test run (mpiexec world, Slurm job incl. queue time).
    progress : callable, optional
        Receives a status text (or None at the end of a wait).
    """
    if profile not in (None, "clusterml-slurm"):
        raise ValueError(f"profile={profile!r}: doctor checks the clusterml-slurm profile")
    checks = []
    c, info = check_mpi4py()
    checks.append(c)
    checks += check_mpiexecs(info)
    checks.append(check_mpiexec_world(timeout))
    nodes = []
    if slurm == "no":
        checks.append(Check("slurm", "skipped", "Slurm checks skipped (--slurm no)"))
        slurm_up = False
    else:
        from .doctor_slurm import check_sinfo

        c, nodes = check_sinfo()
        if slurm == "yes" and c.status == "skipped":
            c.status = "problem"
            c.fix = "install the Slurm client commands or put them on PATH"
        checks.append(c)
        slurm_up = c.status == "ok"
    pchecks, loaded = check_profiles(slurm_up)
    from .doctor_slurm import check_slurm_job
    checks += pchecks
    if slurm_up and "clusterml-slurm" in loaded:
        checks += check_slurm_job(loaded["clusterml-slurm"], nodes, timeout, progress)
    elif slurm_up:
        checks.append(Check("srun-world", "skipped", "clusterml-slurm is not installed"))
    checks.append(check_connection_files())
    return checks


_MARK = {"ok": "ok", "warning": "WARN", "problem": "PROBLEM", "skipped": "skip"}


def print_progress(text) -> None:
    if text is None:
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[K")
        return
    if sys.stderr.isatty():
        sys.stderr.write("\r\x1b[K" + text)
        sys.stderr.flush()


def print_report(checks: list[Check], stream=None) -> None:
    stream = stream or sys.stdout
    for c in checks:
        print(f"[{_MARK[c.status]:>7}] {c.name}: {c.summary}", file=stream)
        if c.details:
            print(f"          {c.details}", file=stream)
        if c.fix and c.status in ("problem", "warning"):
            print(f"          fix: {c.fix}", file=stream)
    n = sum(c.status == "problem" for c in checks)
    print(f"{n} problem(s)" if n else "all checks ok", file=stream)
