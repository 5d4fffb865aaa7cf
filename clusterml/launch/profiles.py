"""clusterml's ipyparallel profiles: settings stored as VALUES in ``ipcluster_config.json``.

The templates are the repository's top-level ``profiles/<name>/ipcluster_config.json``
(the only copy; an installed clusterml ships them as data files under
``<prefix>/share/clusterml/profiles``).  They hold no code: the launchers of
:mod:`clusterml.launch.launchers` (entry points ``clusterml-slurm``,
``clusterml-mpi``) read their settings as traitlets traits, and the Slurm
batch script is rendered when a job is submitted.

:func:`install` writes a template plus the given settings into
``$IPYTHONDIR/profile_<name>/``; :func:`set_values` changes some settings of
an installed profile and keeps the others.  Every value is checked before
anything is written: Slurm values by rendering the batch script exactly as the
launcher will (:mod:`clusterml.launch.slurmsettings` refuses newlines, ``"`` and ``\\``
in ``#SBATCH`` values and shell-quotes the rest).

Modes: the profile folder and its ``security/``, ``jobs/`` and ``log/`` folders
are 0700, files 0600; a missing IPython directory is created 0700.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PROFILE_NAMES", "CONFIG", "KEYS", "template_dir", "ipython_dir", "profile_dir",
           "ProfileSettings", "InstallResult", "install", "set_values", "read_settings",
           "render_config", "parse_assignment", "interface_address"]

PROFILE_NAMES = ("clusterml-local", "clusterml-slurm")
CONFIG = "ipcluster_config.json"

#: Short setting names (``clusterml profile set NAME key=value``) -> (section, trait).
KEYS = {
    "clusterml-slurm": {
        "account": ("SlurmLauncher", "account"), "qos": ("SlurmLauncher", "qos"),
        "partition": ("SlurmLauncher", "queue"), "queue": ("SlurmLauncher", "queue"),
        "time": ("SlurmLauncher", "timelimit"), "timelimit": ("SlurmLauncher", "timelimit"),
        **{k: ("SlurmSite", k) for k in ("nodes", "ntasks_per_node", "cpus_per_task", "mem",
                                         "extra_sbatch", "setup", "venv", "mpi", "mpiexec",
                                         "srun_args", "env", "poll_interval")},
        "controller_ip": ("Cluster", "controller_ip"),
        "controller_location": ("Cluster", "controller_location"),
        "engine_timeout": ("Cluster", "engine_timeout"),
        "controller_launcher_class": ("Cluster", "controller_launcher_class"),
    },
    "clusterml-local": {
        "controller_ip": ("Cluster", "controller_ip"),
        "engine_timeout": ("Cluster", "engine_timeout"),
        "mpi_cmd": ("MPIEngineSetLauncher", "mpi_cmd"),
        "mpi_args": ("MPIEngineSetLauncher", "mpi_args"),
        "env": ("ClusterMLMPIEngineSetLauncher", "env"),
        "loopback_only": ("ClusterMLMPIEngineSetLauncher", "loopback_only"),
    },
}

_TEXT = {"account", "qos", "queue", "timelimit", "mem", "venv", "mpi", "mpiexec", "controller_ip",
         "controller_location"}
_HOST = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9._:-]*)$")
_IFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def template_dir(name: str) -> Path:
    """The template folder of profile ``name`` (repository ``profiles/`` or installed data)."""
    if name not in PROFILE_NAMES:
        raise ValueError(f"profile template {name!r}: expected one of {list(PROFILE_NAMES)}")
    for base in (Path(__file__).resolve().parents[2] / "profiles",
                 Path(sys.prefix) / "share" / "clusterml" / "profiles"):
        if (base / name / CONFIG).is_file():
            return base / name
    raise FileNotFoundError(f"the {name} template is missing (expected profiles/{name}/{CONFIG})")


def ipython_dir() -> Path:
    """The user's IPython directory (``$IPYTHONDIR`` or ``~/.ipython``)."""
    from IPython.paths import get_ipython_dir

    return Path(get_ipython_dir())


def profile_dir(profile: str, ipython: str | os.PathLike | None = None) -> Path:
    """``<ipython dir>/profile_<profile>`` (may not exist)."""
    return Path(ipython if ipython is not None else ipython_dir()) / f"profile_{profile}"


# ----------------------------------------------------------------------------- settings
@dataclass
class ProfileSettings:
    """Settings given to :func:`install`; None / empty means "keep the template's value".

    ``slurm`` holds Slurm keys (``account``, ``partition``, ``time``, ``nodes``,
    ``ntasks_per_node``, ``cpus_per_task``, ``mem``, ``extra_sbatch``, ``setup``,
    ``venv``, ``mpi``, ``mpiexec``, ``qos``), ``controller`` holds ``ip``,
    ``interface``, ``location``, ``on_compute_node``; ``env`` the engines'
    environment (both profiles).
    """

    slurm: dict = field(default_factory=dict)
    controller: dict = field(default_factory=dict)
    engine_timeout: int | None = None
    mpiexec: str | None = None  # local profile's mpiexec (and the Slurm one for mpi="mpiexec")
    mpi_args: list | None = None
    env: dict = field(default_factory=dict)


def _check_host(what: str, value) -> str:
    if not isinstance(value, str) or not _HOST.match(value):
        raise ValueError(f"{what}={value!r}: expected an IP address, a host name or '*'")
    return value


def interface_address(interface: str) -> str:
    """IPv4 address of a network interface of this host (e.g. ``"ib0"``), for the controller.

    Parameters
    ----------
    interface : str

    Returns
    -------
    str
        Dotted-quad address.

    Raises
    ------
    ValueError
        If the name is not an interface name, the interface does not exist or
        has no IPv4 address.
    """
    import socket

    import psutil

    if not _IFACE.match(str(interface)):
        raise ValueError(f"controller interface={interface!r}: expected a network interface name like 'ib0'")
    addrs = psutil.net_if_addrs()
    if interface not in addrs:
        raise ValueError(f"interface {interface!r}: no such interface "
                         f"(there are: {', '.join(sorted(addrs))})")
    for a in addrs[interface]:
        if a.family == socket.AF_INET:
            return a.address
    raise ValueError(f"interface {interface!r}: no IPv4 address")


def _controller_values(name: str, ctl: dict) -> dict:
    ctl = {k: v for k, v in ctl.items() if v is not None}
    unknown = sorted(set(ctl) - {"ip", "interface", "location", "on_compute_node"})
    if unknown:
        raise ValueError(f"unknown controller setting(s) {unknown}")
    if name == "clusterml-local" and set(ctl) - {"ip"}:
        raise ValueError(f"controller setting(s) {sorted(set(ctl) - {'ip'})} apply to clusterml-slurm only")
    out = {}
    if "interface" in ctl:
        addr = interface_address(ctl["interface"])
        out["controller_location"] = addr
        if "ip" not in ctl and not ctl.get("on_compute_node"):
            out["controller_ip"] = addr  # listen on that interface only
    if "ip" in ctl:
        out["controller_ip"] = _check_host("controller ip", ctl["ip"])
    if "location" in ctl:
        out["controller_location"] = _check_host("controller location", ctl["location"])
    if ctl.get("on_compute_node"):
        out["controller_launcher_class"] = "clusterml-slurm"
    return out


def _as_values(name: str, s: ProfileSettings) -> dict:
    """ProfileSettings -> ``{short key: value}`` for :func:`_apply`."""
    values = {}
    if name == "clusterml-slurm":
        values.update({k: v for k, v in s.slurm.items() if v is not None})
        if s.mpiexec is not None:
            values.setdefault("mpiexec", s.mpiexec)
        if s.mpi_args:
            raise ValueError("mpi_args apply to clusterml-local only (Slurm: use srun_args / extra_sbatch)")
    else:
        wrong = sorted(k for k, v in s.slurm.items() if v not in (None, [], ()))
        if wrong:
            raise ValueError(f"Slurm setting(s) {wrong} apply to clusterml-slurm only")
        if s.mpiexec is not None:
            values["mpi_cmd"] = [s.mpiexec]
        if s.mpi_args is not None:
            values["mpi_args"] = list(s.mpi_args)
    values.update(_controller_values(name, s.controller))
    if s.engine_timeout is not None:
        values["engine_timeout"] = s.engine_timeout
    if s.env:
        values["env"] = dict(s.env)
    return values


def _apply(name: str, config: dict, values: dict) -> dict:
    """A copy of ``config`` with ``values`` (short keys or ``Section.trait``) set."""
    out = json.loads(json.dumps(config))
    keys = KEYS[name]
    for key, value in values.items():
        if "." in key:
            section, trait = key.split(".", 1)
        elif key in keys:
            section, trait = keys[key]
        else:
            raise ValueError(f"unknown setting {key!r} of {name}; expected one of "
                             f"{sorted(keys)} or Section.trait")
        if trait in _TEXT and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # account=123 is a name, not a number
        if key == "env" and isinstance(value, dict):
            value = {**out.get(section, {}).get(trait, {}), **value}
        out.setdefault(section, {})[trait] = value
    return out


def _check(name: str, config: dict) -> None:
    """Load ``config`` the way ipyparallel will and render the job script: refuse bad values."""
    from traitlets import TraitError
    from traitlets.config import Config

    cfg = Config(config)
    ctl = cfg.Cluster
    for key in ("controller_ip", "controller_location"):
        if key in ctl:
            _check_host(key, ctl[key])
    t = ctl.get("engine_timeout", 1)
    if isinstance(t, bool) or not isinstance(t, int) or t < 1:
        raise ValueError(f"engine_timeout={t!r}: expected a positive number of seconds")
    for var, val in {**cfg.SlurmSite.get("env", {}),
                     **cfg.ClusterMLMPIEngineSetLauncher.get("env", {})}.items():
        if not _ENV_NAME.match(str(var)) or "\x00" in str(val):
            raise ValueError(f"env {var}={val!r}: expected NAME=VALUE with a shell variable name")
    from .launchers import (
        ClusterMLMPIEngineSetLauncher,
        ClusterMLSlurmControllerLauncher,
        ClusterMLSlurmEngineSetLauncher,
    )

    try:
        if name == "clusterml-slurm":
            quiet = dict(config=cfg, output_file=os.devnull)  # no log folder in the cwd
            ClusterMLSlurmEngineSetLauncher(**quiet).slurm_settings()
            if ctl.get("controller_launcher_class") == "clusterml-slurm":
                ClusterMLSlurmControllerLauncher(**quiet).slurm_settings(controller=True)
        else:
            launcher = ClusterMLMPIEngineSetLauncher(config=cfg)
            for a in list(launcher.mpi_cmd) + list(launcher.mpi_args):
                if any(ord(ch) < 32 for ch in a):
                    raise ValueError(f"mpi argument {a!r}: expected one string on one line")
    except TraitError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None


def render_config(name: str, settings: ProfileSettings | dict | None = None,
                  base: dict | None = None) -> str:
    """The profile's ``ipcluster_config.json`` text: ``base`` (default the template) + settings.

    Raises
    ------
    ValueError
        A value is not acceptable (the message names it) or does not apply.
    """
    if base is None:
        base = json.loads((template_dir(name) / CONFIG).read_text())
    values = settings if isinstance(settings, dict) else _as_values(name, settings or ProfileSettings())
    config = _apply(name, base, values)
    _check(name, config)
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def read_settings(config_text: str) -> dict:
    """The stored settings (``{"Section": {"trait": value}}``) of a profile config."""
    return json.loads(config_text)


def parse_assignment(text: str) -> tuple[str, object]:
    """``key=value`` -> ``(key, value)``; the value as JSON if it parses (``2``, ``["a"]``), else text."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r}: expected key=value")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


# ----------------------------------------------------------------------------- install
@dataclass
class InstallResult:
    """What :func:`install` / :func:`set_values` did for one profile."""

    name: str
    path: Path  # the profile folder
    config: Path  # its ipcluster_config.json
    backup: Path | None  # the previous config, when replaced


def _secure_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _split(names, settings: ProfileSettings) -> dict:
    """Per profile, the settings that apply to it (Slurm-only ones go to clusterml-slurm)."""
    out = {}
    for name in names:
        s = settings
        if name == "clusterml-local" and "clusterml-slurm" in names:
            ip = settings.controller.get("ip")
            s = ProfileSettings(controller={"ip": ip} if ip is not None else {},
                                engine_timeout=settings.engine_timeout, mpiexec=settings.mpiexec,
                                mpi_args=settings.mpi_args, env=settings.env)
        elif name == "clusterml-slurm" and "clusterml-local" in names:
            s = ProfileSettings(slurm=settings.slurm, controller=settings.controller,
                                engine_timeout=settings.engine_timeout, mpiexec=settings.mpiexec,
                                env=settings.env)
        out[name] = s
    return out


def _write(name: str, base: Path, text: str) -> InstallResult:
    pdir = profile_dir(name, base)
    _secure_dir(pdir)
    for sub in ("security", "log", "jobs", "startup", "pid"):
        _secure_dir(pdir / sub)
    cfg = pdir / CONFIG
    backup = None
    if cfg.exists() and cfg.read_text() != text:
        backup = cfg.with_name(f"{CONFIG}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(cfg, backup)
        os.chmod(backup, 0o600)
    _write_private(cfg, text)
    return InstallResult(name, pdir, cfg, backup)


def _base(ipython) -> Path:
    base = Path(ipython) if ipython is not None else ipython_dir()
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(base, 0o700)  # connection files live below it: nobody else needs to read it
    return base


def install(names=PROFILE_NAMES, settings: ProfileSettings | None = None, *,
            ipython: str | os.PathLike | None = None, force: bool = False) -> list[InstallResult]:
    """Write the profiles (template + ``settings``) into the IPython directory.

    Parameters
    ----------
    names : sequence of str
        Templates to install (default both).
    settings : ProfileSettings, optional
    ipython : path, optional
        The IPython directory (default ``$IPYTHONDIR`` or ``~/.ipython``).
    force : bool
        Replace an existing config that differs (the old one is kept as
        ``ipcluster_config.json.bak-<time>``); without it that is an error, so
        site settings are never lost silently (:func:`set_values` changes some).

    Returns
    -------
    list of InstallResult

    Raises
    ------
    ValueError
        A bad setting (nothing is written), or a differing profile exists and
        ``force`` is False.
    """
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError("no profile to install")
    per = _split(names, settings or ProfileSettings())
    rendered = {name: render_config(name, per[name]) for name in names}  # a bad value writes nothing
    base = _base(ipython)
    for name in names:
        cfg = profile_dir(name, base) / CONFIG
        if cfg.exists() and cfg.read_text() != rendered[name] and not force:
            raise ValueError(f"{cfg} exists and differs; rerun with --force to replace it (the old "
                             f"file is kept as a .bak copy), or change settings with: clusterml "
                             f"profile set {name} key=value")
    return [_write(name, base, rendered[name]) for name in names]


def set_values(name: str, values: dict, *, ipython: str | os.PathLike | None = None) -> InstallResult:
    """Change some settings of an installed profile; the others stay as they are.

    Parameters
    ----------
    name : str
        An installed clusterml profile.
    values : dict
        Short keys (see :data:`KEYS`) or ``Section.trait``; ``env`` adds to the
        engines' environment.

    Raises
    ------
    ValueError, FileNotFoundError
    """
    if name not in KEYS:
        raise ValueError(f"profile {name!r}: expected one of {list(PROFILE_NAMES)}")
    base = _base(ipython)
    cfg = profile_dir(name, base) / CONFIG
    if not cfg.exists():
        raise FileNotFoundError(f"profile {name} is not installed ({cfg}); run: clusterml profile install")
    text = render_config(name, dict(values), base=read_settings(cfg.read_text()))
    return _write(name, base, text)


def mode(path: str | os.PathLike) -> int:
    """Permission bits of ``path`` (e.g. ``0o700``)."""
    return stat.S_IMODE(os.stat(path).st_mode)
