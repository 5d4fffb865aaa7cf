"""Install clusterml's ipyparallel profiles into the user's IPython directory.

The single source of the profile templates is the package folder
``clusterml/launch/profile_templates/<name>/`` (shipped as package data, so an
installed clusterml finds them); the repository's top-level ``profiles/`` is a
copy for people browsing the sources, kept identical by a test and refreshed
with ``python -m clusterml.launch.profiles --sync``.

:func:`install` copies a template into ``$IPYTHONDIR/profile_<name>/`` and
writes the site settings into its settings block (``SITE`` / ``CONTROLLER`` /
``ENGINE_TIMEOUT`` for ``clusterml-slurm``; ``MPIEXEC`` / ``CONTROLLER_IP`` /
``ENGINE_TIMEOUT`` for ``clusterml-local``). Values are written as Python
literals (``repr``), replacing exactly the source span of the template's value
(found with :mod:`ast`), and read back with :func:`ast.literal_eval` before the
file is kept, so no value can become code. Slurm values are validated by
rendering the batch template (:mod:`clusterml.launch.slurm` refuses newlines,
``"`` and ``\\`` in ``#SBATCH`` values and quotes the rest).

Modes: the profile folder and its ``security/``, ``jobs/`` and ``log/``
folders are 0700, files 0600; a missing IPython directory is created 0700.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import slurm as S

__all__ = [
    "TEMPLATES",
    "PROFILE_NAMES",
    "template_dir",
    "ipython_dir",
    "profile_dir",
    "InstallResult",
    "install",
    "read_settings",
    "render_config",
]

TEMPLATES = Path(__file__).resolve().parent / "profile_templates"
PROFILE_NAMES = ("clusterml-local", "clusterml-slurm")
CONFIG = "ipcluster_config.py"

# Which assignment / dict key a setting goes to, per template.
SLURM_SITE_KEYS = (
    "account", "partition", "time", "nodes", "ntasks_per_node", "cpus_per_task", "mem",
    "extra_sbatch", "setup", "venv", "mpi", "mpiexec",
)
CONTROLLER_KEYS = ("ip", "interface", "location", "on_compute_node")

_HOST = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9._:-]*)$")
_IFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$")


def template_dir(name: str) -> Path:
    """The packaged template folder of profile ``name``."""
    if name not in PROFILE_NAMES:
        raise ValueError(f"profile template {name!r}: expected one of {list(PROFILE_NAMES)}")
    return TEMPLATES / name


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
    """Site settings for the profiles; None / empty means "keep the template's value".

    ``slurm`` holds keys of ``SITE`` (see :class:`clusterml.launch.slurm.SlurmSettings`),
    ``controller`` keys of ``CONTROLLER`` (``ip``, ``interface``, ``location``,
    ``on_compute_node``).
    """

    slurm: dict = field(default_factory=dict)
    controller: dict = field(default_factory=dict)
    engine_timeout: int | None = None
    mpiexec: str | None = None  # local profile's MPIEXEC (and SITE["mpiexec"])
    mpi_args: list | None = None  # local profile's MPI_ARGS


def _check_host(what: str, value: str) -> str:
    if not isinstance(value, str) or not _HOST.match(value):
        raise ValueError(f"{what}={value!r}: expected an IP address, a host name or '*'")
    return value


def _validate(settings: ProfileSettings) -> None:
    unknown = sorted(set(settings.slurm) - set(SLURM_SITE_KEYS))
    if unknown:
        raise ValueError(f"unknown Slurm setting(s) {unknown}; expected some of {list(SLURM_SITE_KEYS)}")
    unknown = sorted(set(settings.controller) - set(CONTROLLER_KEYS))
    if unknown:
        raise ValueError(f"unknown controller setting(s) {unknown}; expected some of {list(CONTROLLER_KEYS)}")
    ctl = settings.controller
    if ctl.get("ip") is not None:
        _check_host("controller ip", ctl["ip"])
    if ctl.get("location") is not None:
        _check_host("controller location", ctl["location"])
    if ctl.get("interface") is not None and not _IFACE.match(str(ctl["interface"])):
        raise ValueError(f"controller interface={ctl['interface']!r}: expected a network interface name like 'ib0'")
    if settings.engine_timeout is not None:
        t = settings.engine_timeout
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise ValueError(f"engine timeout={t!r}: expected a positive number of seconds")
    for name, value in (("mpiexec", settings.mpiexec), ("mpiexec", settings.slurm.get("mpiexec"))):
        if value is not None and (not isinstance(value, str) or not value or _has_control(value)):
            raise ValueError(f"{name}={value!r}: expected a command name or path on one line")
    for a in settings.mpi_args or []:
        if not isinstance(a, str) or _has_control(a):
            raise ValueError(f"mpi argument {a!r}: expected one string on one line")


def _has_control(text: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in text)


# ----------------------------------------------------------------------------- rendering
def _assignments(tree: ast.Module) -> dict[str, ast.expr]:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = node.value
    return out


def _dict_keywords(node: ast.expr, name: str) -> dict[str, ast.expr]:
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict"):
        raise ValueError(f"template: {name} is not a dict(...) call")
    return {kw.arg: kw.value for kw in node.keywords if kw.arg}


def _replace_spans(text: str, edits: list[tuple[ast.expr, object]]) -> str:
    """Replace each node's exact source span with ``repr(value)``."""
    lines = text.splitlines(keepends=True)
    # bottom-up, so earlier offsets stay valid
    for node, value in sorted(edits, key=lambda e: (e[0].lineno, e[0].col_offset), reverse=True):
        if node.lineno != node.end_lineno:
            raise ValueError(f"template value at line {node.lineno} spans several lines")
        raw = lines[node.lineno - 1].encode()
        new = raw[: node.col_offset] + repr(value).encode() + raw[node.end_col_offset :]
        lines[node.lineno - 1] = new.decode()
    return "".join(lines)


def read_settings(config_text: str) -> dict:
    """Literal values of the settings block of a profile config (no code is run).

    Returns
    -------
    dict
        ``{"SITE": {...}, "CONTROLLER": {...}, "ENGINE_TIMEOUT": ..., ...}`` for
        every top-level assignment whose value is a literal or ``dict(...)`` of
        literals; others are left out.
    """
    tree = ast.parse(config_text)
    out = {}
    for name, node in _assignments(tree).items():
        try:
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
                out[name] = {k: ast.literal_eval(v) for k, v in _dict_keywords(node, name).items()}
            else:
                out[name] = ast.literal_eval(node)
        except ValueError:
            continue
    return out


def render_config(name: str, settings: ProfileSettings | None = None) -> str:
    """The template's ``ipcluster_config.py`` with ``settings`` written in.

    Parameters
    ----------
    name : {"clusterml-local", "clusterml-slurm"}
    settings : ProfileSettings, optional

    Returns
    -------
    str

    Raises
    ------
    ValueError
        If a value is not acceptable (the message names it), or a setting does
        not apply to this profile.
    """
    settings = settings or ProfileSettings()
    _validate(settings)
    text = (template_dir(name) / CONFIG).read_text()
    tree = ast.parse(text)
    assigns = _assignments(tree)
    edits: list[tuple[ast.expr, object]] = []
    expected: dict[str, object] = {}

    def put(var: str, key: str | None, value):
        if key is None:
            edits.append((assigns[var], value))
            expected[var] = value
        else:
            kws = _dict_keywords(assigns[var], var)
            if key not in kws:
                raise ValueError(f"template {name}: {var} has no key {key!r}")
            edits.append((kws[key], value))
            expected[f"{var}.{key}"] = value

    if name == "clusterml-slurm":
        site = dict(settings.slurm)
        if settings.mpiexec is not None and "mpiexec" not in site:
            site["mpiexec"] = settings.mpiexec
        for key, value in site.items():
            if value is None:
                continue
            if key in ("extra_sbatch", "setup"):
                value = list(value)
            put("SITE", key, value)
        for key, value in settings.controller.items():
            if value is not None:
                put("CONTROLLER", key, value)
        if settings.mpi_args:
            raise ValueError("mpi_args apply to clusterml-local only (Slurm: use srun_args / extra_sbatch)")
    elif name == "clusterml-local":
        wrong = sorted(k for k, v in settings.slurm.items() if v not in (None, [], ()))
        if wrong:
            raise ValueError(f"Slurm setting(s) {wrong} apply to clusterml-slurm only")
        ctl = {k: v for k, v in settings.controller.items() if v is not None}
        if set(ctl) - {"ip"}:
            raise ValueError(
                f"controller setting(s) {sorted(set(ctl) - {'ip'})} apply to clusterml-slurm only"
            )
        if "ip" in ctl:
            put("CONTROLLER_IP", None, ctl["ip"])
        if settings.mpiexec is not None:
            put("MPIEXEC", None, settings.mpiexec)
        if settings.mpi_args is not None:
            put("MPI_ARGS", None, list(settings.mpi_args))
    if settings.engine_timeout is not None:
        put("ENGINE_TIMEOUT", None, settings.engine_timeout)

    out = _replace_spans(text, edits)
    # read back: every value must come back exactly as given, as a literal
    back = read_settings(out)
    for key, value in expected.items():
        var, _, sub = key.partition(".")
        got = back.get(var, {}).get(sub) if sub else back.get(var)
        if got != value:
            raise ValueError(f"internal error: {key} reads back as {got!r}, not {value!r}")
    if name == "clusterml-slurm":
        # the same validation ipyparallel's config will run: refuse bad #SBATCH values now
        S.render_engine_batch_template(S.SlurmSettings.from_mapping(back["SITE"]))
        ctl = back["CONTROLLER"]
        if ctl.get("on_compute_node"):
            S.render_controller_batch_template(
                S.SlurmSettings.from_mapping(
                    {k: v for k, v in back["SITE"].items() if k not in ("nodes", "ntasks_per_node", "mpi", "mpiexec")}
                )
            )
    compile(out, CONFIG, "exec")
    return out


# ----------------------------------------------------------------------------- install
@dataclass
class InstallResult:
    """What :func:`install` did for one profile."""

    name: str
    path: Path  # the profile folder
    config: Path  # its ipcluster_config.py
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


def install(
    names=PROFILE_NAMES,
    settings: ProfileSettings | None = None,
    *,
    ipython: str | os.PathLike | None = None,
    force: bool = False,
) -> list[InstallResult]:
    """Write the profiles into the IPython directory.

    Parameters
    ----------
    names : sequence of str
        Templates to install (default both).
    settings : ProfileSettings, optional
        Site settings written into the settings blocks.
    ipython : path, optional
        The IPython directory (default ``$IPYTHONDIR`` or ``~/.ipython``).
    force : bool
        Replace an existing ``ipcluster_config.py`` that differs (the old one
        is kept as ``ipcluster_config.py.bak-<time>``). Without it, a differing
        existing config is an error, so site edits are never lost silently.

    Returns
    -------
    list of InstallResult

    Raises
    ------
    ValueError
        Bad setting (nothing is written), or a profile exists and ``force`` is
        False.
    """
    names = list(dict.fromkeys(names))
    if not names:
        raise ValueError("no profile to install")
    settings = settings or ProfileSettings()
    # render everything first: a bad value writes nothing
    rendered = {}
    ctl_given = {k for k, v in settings.controller.items() if v is not None}
    for name in names:
        s = settings
        if name == "clusterml-local" and "clusterml-slurm" in names:
            # Slurm-only settings go to the Slurm profile; the local one takes the rest
            s = ProfileSettings(
                controller={"ip": settings.controller["ip"]} if "ip" in ctl_given else {},
                engine_timeout=settings.engine_timeout,
                mpiexec=settings.mpiexec,
                mpi_args=settings.mpi_args,
            )
        elif name == "clusterml-slurm" and "clusterml-local" in names:
            s = ProfileSettings(
                slurm=settings.slurm, controller=settings.controller,
                engine_timeout=settings.engine_timeout, mpiexec=settings.mpiexec,
            )
        rendered[name] = render_config(name, s)

    base = Path(ipython) if ipython is not None else ipython_dir()
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    # connection files live below it: nobody else needs to read it
    os.chmod(base, 0o700)
    results = []
    for name in names:
        pdir = profile_dir(name, base)
        cfg = pdir / CONFIG
        if cfg.exists() and cfg.read_text() != rendered[name] and not force:
            raise ValueError(
                f"{cfg} exists and differs; rerun with --force to replace it "
                "(the old file is kept as a .bak copy)"
            )
    for name in names:
        pdir = profile_dir(name, base)
        _secure_dir(pdir)
        for sub in ("security", "log", "jobs", "startup", "pid"):
            _secure_dir(pdir / sub)
        cfg = pdir / CONFIG
        backup = None
        if cfg.exists() and cfg.read_text() != rendered[name]:
            backup = cfg.with_name(f"{CONFIG}.bak-{time.strftime('%Y%m%d-%H%M%S')}")
            shutil.copy2(cfg, backup)
            os.chmod(backup, 0o600)
        _write_private(cfg, rendered[name])
        # other template files (none today) are copied as they are
        for src in sorted(template_dir(name).iterdir()):
            if src.is_file() and src.name != CONFIG and not src.name.endswith(".pyc"):
                _write_private(pdir / src.name, src.read_text())
        results.append(InstallResult(name, pdir, cfg, backup))
    return results


def mode(path: str | os.PathLike) -> int:
    """Permission bits of ``path`` (e.g. ``0o700``)."""
    return stat.S_IMODE(os.stat(path).st_mode)


def sync_repository_copy(dest: str | os.PathLike | None = None) -> list[Path]:
    """Copy the packaged templates to the repository's ``profiles/`` folder."""
    dest = Path(dest) if dest is not None else Path(__file__).resolve().parents[2] / "profiles"
    written = []
    for name in PROFILE_NAMES:
        for src in sorted(template_dir(name).iterdir()):
            if src.is_file() and not src.name.endswith(".pyc"):
                out = dest / name / src.name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(src.read_text())
                written.append(out)
    return written


if __name__ == "__main__":  # python -m clusterml.launch.profiles --sync
    import sys

    if sys.argv[1:] != ["--sync"]:
        sys.exit("usage: python -m clusterml.launch.profiles --sync")
    for p in sync_repository_copy():
        print(p)
