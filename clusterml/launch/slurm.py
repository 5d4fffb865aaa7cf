"""Slurm batch scripts for clusterml, rendered by pure functions, and Slurm queries.

Three scripts are rendered from one :class:`SlurmSettings`:

- the **engines** job: ``ntasks`` tasks forming ONE MPI world, each an ipyparallel
  engine started with ``--mpi`` so that engine id == MPI rank
  (:func:`render_engine_script`, or :func:`render_engine_batch_template` for
  ipyparallel's ``SlurmEngineSetLauncher.batch_template``);
- a **controller** on a compute node (:func:`render_controller_script`,
  :func:`render_controller_batch_template`);
- a plain **SPMD** program under ``srun`` with no Jupyter at all
  (:func:`render_spmd_script`).

Rendering is pure: settings in, text out, nothing touched. Every user value that
reaches the shell is quoted with :func:`shlex.quote`. Values that go into
``#SBATCH`` lines cannot be shell-quoted (bash never reads those lines; sbatch
parses them with its own rules), so they are validated instead: control
characters (a newline above all), ``"`` and ``\\`` are refused with a
:class:`ValueError`; a value with spaces or other punctuation is wrapped in
double quotes, which sbatch strips. Setup lines and extra ``#SBATCH`` options are
the user's own shell code / sbatch options and are written verbatim (one line
each, no newline).

ipyparallel formats ``batch_template`` with :class:`IPython.utils.text.EvalFormatter`
(``str.format`` rules, fields evaluated as expressions), filling ``{n}``,
``{program_and_args}``, ``{output_file}``, ... The ``*_batch_template`` functions
therefore return a script in which every literal brace is doubled and only those
placeholders remain.

This module imports neither mpi4py nor ipyparallel.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time as _time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "MPI_MODES",
    "SlurmSettings",
    "SlurmError",
    "SubmittedJob",
    "JobInfo",
    "validate_settings",
    "render_spmd_script",
    "render_engine_script",
    "render_engine_batch_template",
    "render_controller_script",
    "render_controller_batch_template",
    "write_batch_script",
    "parse_sbatch_output",
    "sbatch",
    "job_info",
    "describe_job",
    "list_jobs",
    "scancel",
    "wait_for_job_end",
    "interface_address",
]

#: How tasks of a job are wired into one MPI world.
#: ``pmi2``/``pmix``: ``srun --mpi=<mode>``; ``mpiexec``: the MPI library's own
#: ``mpiexec`` inside the allocation; ``none``: ``srun --mpi=none`` (N singletons
#: of size 1 -- only useful to demonstrate that trap, e.g. in ``clusterml doctor``).
MPI_MODES = ("pmi2", "pmix", "mpiexec", "none")

# Values written raw into #SBATCH lines; anything else is double-quoted.
_SBATCH_PLAIN = re.compile(r"^[A-Za-z0-9_.,:/@%+=-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TIME = re.compile(
    r"^(?:\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|"
    r"\d+-\d+:\d{1,2}:\d{1,2}|UNLIMITED|INFINITE)$"
)
_MEM = re.compile(r"^\d+[KMGT]?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# NUL is refused in every user value, so these placeholders can never collide.
_N = "\x00n\x00"
_PROGRAM = "\x00program_and_args\x00"
_OUTPUT = "\x00output_file\x00"
_CLUSTER_ID = "\x00cluster_id\x00"


class SlurmError(RuntimeError):
    """A Slurm command failed; the message carries Slurm's own words."""


@dataclass(frozen=True)
class SlurmSettings:
    """Site and job settings for the rendered batch scripts.

    Parameters
    ----------
    account, partition : str, optional
        ``--account`` / ``--partition``; omitted when None (site default).
    time : str, optional
        Wall time in a Slurm format (``"30"``, ``"01:00:00"``, ``"1-12:00"``).
    nodes, ntasks, ntasks_per_node, cpus_per_task : int, optional
        Resource request. ``cpus_per_task`` also sets ``OMP_NUM_THREADS``,
        ``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` (1 when None) and is
        passed to ``srun`` again (since Slurm 22.05 srun does not inherit it).
        For engines, ``ntasks`` is the number of engines.
    mem : str, optional
        ``--mem`` per node, e.g. ``"4G"``.
    job_name : str, optional
        ``--job-name``.
    output : str, optional
        ``--output`` path (``%j`` etc. allowed). For ipyparallel templates the
        default is ipyparallel's own ``{output_file}`` (its log folder).
    workdir : str, optional
        ``--chdir`` for the job.
    extra_sbatch : sequence of str
        Further sbatch options, one per entry, e.g. ``"--qos=debug"``; written
        verbatim after ``#SBATCH`` (a leading ``#SBATCH`` is accepted).
    setup : sequence of str
        Shell lines run before the program (``module load ...``,
        ``source venv/bin/activate``); written verbatim, one line each.
    venv : str, optional
        A virtual environment to activate (``source <venv>/bin/activate``).
    env : mapping of str to str
        Variables exported in the job, values shell-quoted.
    mpi : {"pmi2", "pmix", "mpiexec", "none"}
        How tasks join one MPI world (see :data:`MPI_MODES`).
    mpiexec : str
        The ``mpiexec`` used when ``mpi="mpiexec"``; must belong to the MPI
        library mpi4py loads (e.g. the one next to the interpreter).
    srun_args : sequence of str
        Extra arguments for ``srun``, each shell-quoted.
    """

    account: str | None = None
    partition: str | None = None
    time: str | None = None
    nodes: int | None = None
    ntasks: int | None = None
    ntasks_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    job_name: str | None = None
    output: str | None = None
    workdir: str | None = None
    extra_sbatch: Sequence[str] = ()
    setup: Sequence[str] = ()
    venv: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    mpi: str = "pmi2"
    mpiexec: str = "mpiexec"
    srun_args: Sequence[str] = ()

    @classmethod
    def from_mapping(cls, values: Mapping[str, object] | SlurmSettings) -> SlurmSettings:
        """Build settings from a mapping, refusing unknown keys.

        Parameters
        ----------
        values : mapping or SlurmSettings
            Keys are field names; None values mean "not set".

        Returns
        -------
        SlurmSettings
        """
        if isinstance(values, SlurmSettings):
            return values
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown Slurm setting(s) {unknown}; expected some of {sorted(known)}"
            )
        return cls(**{k: v for k, v in values.items() if v is not None})


# --------------------------------------------------------------------- validation
def _no_nul(name: str, value: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{name}={value!r}: contains a NUL character")
    return value


def _sbatch_value(name: str, value: object) -> str:
    """Return ``value`` ready for an ``#SBATCH --opt=<value>`` line."""
    text = str(value)
    if not text:
        raise ValueError(f"{name}: empty value for an #SBATCH line")
    if _CONTROL.search(text):
        raise ValueError(
            f"{name}={text!r}: contains a newline or control character; "
            "#SBATCH lines cannot be quoted, so this value cannot be used"
        )
    if '"' in text or "\\" in text:
        raise ValueError(
            f"{name}={text!r}: contains '\"' or '\\', which sbatch cannot read "
            "back reliably from an #SBATCH line"
        )
    return text if _SBATCH_PLAIN.match(text) else f'"{text}"'


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r}: expected a positive integer")
    return value


def _one_line(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}={value!r}: expected a string")
    if "\n" in value or "\r" in value or "\x00" in value:
        raise ValueError(
            f"{name}={value!r}: contains a newline; give one line per entry"
        )
    return value


def _seq(name: str, value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{name}={value!r}: expected a list of strings")
    return list(value)


def validate_settings(settings: SlurmSettings | Mapping[str, object]) -> SlurmSettings:
    """Check every setting and return them as :class:`SlurmSettings`.

    Parameters
    ----------
    settings : SlurmSettings or mapping

    Returns
    -------
    SlurmSettings

    Raises
    ------
    ValueError
        Naming the first bad setting and why it is refused.
    """
    s = SlurmSettings.from_mapping(settings)
    for name in ("account", "partition", "job_name", "output", "workdir"):
        value = getattr(s, name)
        if value is not None:
            _sbatch_value(name, value)
    if s.time is not None and not _TIME.match(str(s.time)):
        raise ValueError(
            f"time={s.time!r}: expected a Slurm time such as '30', '01:00:00' or '1-12:00'"
        )
    if s.mem is not None and not _MEM.match(str(s.mem)):
        raise ValueError(f"mem={s.mem!r}: expected a size such as '4000', '4G' or '512M'")
    for name in ("nodes", "ntasks", "ntasks_per_node", "cpus_per_task"):
        value = getattr(s, name)
        if value is not None:
            _positive_int(name, value)
    for i, opt in enumerate(_seq("extra_sbatch", s.extra_sbatch)):
        _one_line(f"extra_sbatch[{i}]", opt)
        if not _extra_option(opt).startswith("-"):
            raise ValueError(f"extra_sbatch[{i}]={opt!r}: expected an option such as '--qos=debug'")
    for i, line in enumerate(_seq("setup", s.setup)):
        _one_line(f"setup[{i}]", line)
    for i, arg in enumerate(_seq("srun_args", s.srun_args)):
        if not isinstance(arg, str):
            raise ValueError(f"srun_args[{i}]={arg!r}: expected a string")
        _no_nul(f"srun_args[{i}]", arg)
    if s.venv is not None:
        _no_nul("venv", str(s.venv))
    if not isinstance(s.env, Mapping):
        raise ValueError(f"env={s.env!r}: expected a mapping of names to strings")
    for key, value in s.env.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise ValueError(f"env: {key!r} is not a valid variable name")
        _no_nul(f"env[{key!r}]", str(value))
    if s.mpi not in MPI_MODES:
        raise ValueError(f"mpi={s.mpi!r}: expected one of {', '.join(MPI_MODES)}")
    _no_nul("mpiexec", str(s.mpiexec))
    return s


def _extra_option(opt: str) -> str:
    opt = opt.strip()
    if opt.startswith("#SBATCH"):
        opt = opt[len("#SBATCH"):].strip()
    return opt


# --------------------------------------------------------------------- rendering
def _render(
    s: SlurmSettings,
    *,
    kind: str,
    ntasks: str | None,
    command: str,
    output: str | None,
    nodes: int | None = None,
    default_job_name: str | None = None,
) -> str:
    """Assemble a script; ``ntasks``, ``command`` and ``output`` are already safe."""
    sb = []

    def opt(flag: str, value: object, name: str) -> None:
        if value is not None:
            sb.append(f"#SBATCH --{flag}={_sbatch_value(name, value)}")

    if s.job_name is not None:
        opt("job-name", s.job_name, "job_name")
    elif default_job_name is not None:
        sb.append(f"#SBATCH --job-name={default_job_name}")
    opt("account", s.account, "account")
    opt("partition", s.partition, "partition")
    opt("time", s.time, "time")
    opt("nodes", nodes if nodes is not None else s.nodes, "nodes")
    if ntasks is not None:
        sb.append(f"#SBATCH --ntasks={ntasks}")
    opt("ntasks-per-node", s.ntasks_per_node, "ntasks_per_node")
    opt("cpus-per-task", s.cpus_per_task, "cpus_per_task")
    opt("mem", s.mem, "mem")
    if output is not None:
        sb.append(f"#SBATCH --output={output}")
    opt("chdir", s.workdir, "workdir")
    sb.append("#SBATCH --export=ALL")
    sb.extend(f"#SBATCH {_extra_option(o)}" for o in s.extra_sbatch)

    threads = s.cpus_per_task or 1
    body = [
        "set -e",
        "",
        "# threads per task follow --cpus-per-task",
        f"export OMP_NUM_THREADS={threads}",
        f"export OPENBLAS_NUM_THREADS={threads}",
        f"export MKL_NUM_THREADS={threads}",
    ]
    if s.env:
        body.append("")
        body.extend(f"export {k}={shlex.quote(str(v))}" for k, v in s.env.items())
    if s.venv is not None or s.setup:
        body += ["", "# setup"]
        if s.venv is not None:
            body.append(f"source {shlex.quote(os.path.join(str(s.venv), 'bin', 'activate'))}")
        body.extend(s.setup)
    body += ["", f"# {kind}"]
    body.append(command)
    return "\n".join(["#!/bin/bash", *sb, "", *body]) + "\n"


def _mpi_launch(s: SlurmSettings, command: str) -> str:
    """The line that starts ``command`` on every task as one MPI world."""
    if s.mpi == "mpiexec":
        return f'exec {shlex.quote(str(s.mpiexec))} -n "${{SLURM_NTASKS}}" {command}'
    words = ["exec", "srun", f"--mpi={s.mpi}"]
    if s.cpus_per_task:
        words.append(f"--cpus-per-task={s.cpus_per_task}")
    words.extend(shlex.quote(a) for a in s.srun_args)
    return " ".join(words) + " " + command


def _as_template(text: str) -> str:
    """Escape literal braces for ipyparallel's formatter, then restore placeholders."""
    text = text.replace("{", "{{").replace("}", "}}")
    return (
        text.replace(_N, "{n}")
        .replace(_PROGRAM, "{program_and_args}")
        .replace(_OUTPUT, "{output_file}")
        .replace(_CLUSTER_ID, "{cluster_id}")
    )


def _argv(name: str, argv: Sequence[str]) -> str:
    if isinstance(argv, str) or not argv:
        raise ValueError(f"{name}={argv!r}: expected a non-empty list of arguments")
    for a in argv:
        if not isinstance(a, str):
            raise ValueError(f"{name}: argument {a!r} is not a string")
        _no_nul(name, a)
    return shlex.join(argv)


def _output(s: SlurmSettings, template: bool) -> str | None:
    if s.output is not None:
        return _sbatch_value("output", s.output)
    return f'"{_OUTPUT}"' if template else None


def render_spmd_script(
    settings: SlurmSettings | Mapping[str, object], command: Sequence[str]
) -> str:
    """Render a batch script running a plain SPMD program on every task.

    Parameters
    ----------
    settings : SlurmSettings or mapping
        ``ntasks`` (or ``nodes`` x ``ntasks_per_node``) sets the world size.
    command : sequence of str
        The program and its arguments, e.g. ``[sys.executable, "job.py"]``;
        each word is shell-quoted.

    Returns
    -------
    str
        The script text (``#!/bin/bash`` first).
    """
    s = validate_settings(settings)
    ntasks = str(s.ntasks) if s.ntasks is not None else None
    return _render(
        s,
        kind="SPMD program: every task runs it, one MPI world",
        ntasks=ntasks,
        command=_mpi_launch(s, _argv("command", command)),
        output=_output(s, template=False),
    )


def _engine(s: SlurmSettings, n: str, program: str, engine_mpi_flag: bool, template: bool) -> str:
    cmd = program + (" --mpi" if engine_mpi_flag else "")
    return _render(
        s,
        kind="ipyparallel engines: engine id == MPI rank (--mpi)",
        ntasks=n,
        command=_mpi_launch(s, cmd),
        output=_output(s, template),
        default_job_name=f'"ipengine-{_CLUSTER_ID}"' if template else None,
    )


def render_engine_script(
    settings: SlurmSettings | Mapping[str, object],
    n: int,
    program_and_args: Sequence[str],
    *,
    engine_mpi_flag: bool = True,
) -> str:
    """Render the engines job for ``n`` engines forming one MPI world.

    Parameters
    ----------
    settings : SlurmSettings or mapping
        ``ntasks``, if set, must equal ``n``.
    n : int
        Number of engines (Slurm tasks, MPI ranks).
    program_and_args : sequence of str
        The engine command, e.g. ``[sys.executable, "-m", "ipyparallel.engine", ...]``.
    engine_mpi_flag : bool
        Append ipengine's ``--mpi`` so that engine id == MPI rank.

    Returns
    -------
    str
    """
    s = validate_settings(settings)
    _positive_int("n", n)
    if s.ntasks is not None and s.ntasks != n:
        raise ValueError(f"ntasks={s.ntasks} disagrees with n={n} engines")
    return _engine(s, str(n), _argv("program_and_args", program_and_args), engine_mpi_flag, False)


def render_engine_batch_template(
    settings: SlurmSettings | Mapping[str, object], *, engine_mpi_flag: bool = True
) -> str:
    """Render the engines job as a ``SlurmEngineSetLauncher.batch_template``.

    The result still holds ipyparallel's ``{n}`` and ``{program_and_args}``
    (and ``{output_file}`` unless ``settings.output`` is set, ``{cluster_id}``
    in the job name unless ``settings.job_name`` is set); every other brace
    is doubled so that ipyparallel's formatter gives it back literally.

    Parameters
    ----------
    settings : SlurmSettings or mapping
        ``ntasks`` is ignored: ipyparallel supplies ``{n}``.
    engine_mpi_flag : bool
        Append ipengine's ``--mpi`` so that engine id == MPI rank.

    Returns
    -------
    str
    """
    s = validate_settings(settings)
    return _as_template(_engine(s, _N, _PROGRAM, engine_mpi_flag, True))


def _controller(s: SlurmSettings, program: str, template: bool) -> str:
    return _render(
        s,
        kind="ipyparallel controller",
        ntasks="1",
        nodes=1,
        command="exec " + program,
        output=_output(s, template),
        default_job_name=f'"ipcontroller-{_CLUSTER_ID}"' if template else None,
    )


def render_controller_script(
    settings: SlurmSettings | Mapping[str, object], program_and_args: Sequence[str]
) -> str:
    """Render a one-task job running the ipyparallel controller on a compute node.

    Parameters
    ----------
    settings : SlurmSettings or mapping
        ``nodes``/``ntasks`` are forced to 1; ``mpi`` is not used.
    program_and_args : sequence of str
        The controller command, e.g. ``["ipcontroller", "--ip=*"]``.

    Returns
    -------
    str
    """
    s = validate_settings(settings)
    return _controller(s, _argv("program_and_args", program_and_args), False)


def render_controller_batch_template(settings: SlurmSettings | Mapping[str, object]) -> str:
    """Render the controller job as a ``SlurmControllerLauncher.batch_template``.

    Parameters
    ----------
    settings : SlurmSettings or mapping

    Returns
    -------
    str
        Holds ``{program_and_args}`` (and ``{output_file}`` unless
        ``settings.output`` is set); other braces are doubled.
    """
    s = validate_settings(settings)
    return _as_template(_controller(s, _PROGRAM, True))


def write_batch_script(text: str, folder: str | os.PathLike, name: str) -> Path:
    """Write a rendered script as ``folder/name`` with mode 0700.

    Parameters
    ----------
    text : str
        The rendered script.
    folder : path
        Created (0700) if missing; must be given explicitly, so scripts never
        land in the current directory by accident.
    name : str
        A plain file name (no ``/``).

    Returns
    -------
    pathlib.Path
        The absolute path of the script.
    """
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"name={name!r}: expected a plain file name")
    folder = Path(folder).absolute()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    try:
        os.fchmod(fd, 0o700)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return path


# --------------------------------------------------------------------- Slurm queries
@dataclass(frozen=True)
class SubmittedJob:
    """What ``sbatch`` answered.

    Attributes
    ----------
    job_id : str
    returncode : int
        sbatch's exit code; with ``wait=True`` it is the job's exit code.
    output : str
        sbatch's stdout and stderr.
    """

    job_id: str
    returncode: int
    output: str


@dataclass(frozen=True)
class JobInfo:
    """A job's state and Slurm's reason for it (e.g. ``PENDING``, ``Resources``)."""

    job_id: str
    state: str
    reason: str
    name: str = ""

    def __str__(self) -> str:
        reason = "" if self.reason in ("", "None", "(null)") else f" ({self.reason})"
        return f"Slurm job {self.job_id} is {self.state}{reason}"


_SUBMITTED = re.compile(r"Submitted batch job (\d+)")
_PARSABLE = re.compile(r"^(\d+)(?:;\S*)?$", re.M)


def parse_sbatch_output(output: str) -> str:
    """Return the job id from sbatch's answer (plain or ``--parsable``).

    Raises
    ------
    SlurmError
        If no job id is found; the message quotes the output.
    """
    m = _SUBMITTED.search(output) or _PARSABLE.search(output.strip())
    if m is None:
        raise SlurmError(f"no job id in sbatch output: {output.strip()!r}")
    return m.group(1)


def _run(argv: Sequence[str], env: Mapping[str, str] | None, timeout: float | None, cwd=None):
    try:
        return subprocess.run(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=None if env is None else dict(env),
            timeout=timeout,
            cwd=cwd,
        )
    except FileNotFoundError as e:
        raise SlurmError(f"{argv[0]} not found: is Slurm installed and on PATH?") from e
    except subprocess.TimeoutExpired as e:
        raise SlurmError(f"{shlex.join(argv)} did not answer within {timeout} s") from e


def sbatch(
    script: str | os.PathLike,
    *,
    args: Sequence[str] = (),
    wait: bool = False,
    cwd: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 60,
) -> SubmittedJob:
    """Submit a batch script.

    Parameters
    ----------
    script : path
    args : sequence of str
        Extra sbatch options (they override the script's ``#SBATCH`` lines).
    wait : bool
        ``sbatch --wait``: return when the job ends; ``returncode`` is then the
        job's exit code.
    cwd : path, optional
        Directory sbatch runs in (the job's default working directory and
        where ``slurm-%j.out`` goes). Default: the script's folder.
    env : mapping, optional
        Environment for sbatch (e.g. with ``SLURM_CONF``); default os.environ.
    timeout : float, optional
        Seconds to wait for sbatch (with ``wait=True``, for the whole job).

    Returns
    -------
    SubmittedJob

    Raises
    ------
    SlurmError
        If Slurm refused the job (the message is Slurm's, e.g. "Requested node
        configuration is not available") or gave no job id.
    """
    script = Path(script).absolute()
    argv = ["sbatch", *(["--wait"] if wait else []), *args, str(script)]
    proc = _run(argv, env, timeout, cwd=str(cwd) if cwd is not None else str(script.parent))
    m = _SUBMITTED.search(proc.stdout) or (
        _PARSABLE.search(proc.stdout.strip()) if proc.returncode == 0 else None
    )
    if m is None:
        raise SlurmError(f"sbatch refused {script.name}: {proc.stdout.strip()}")
    return SubmittedJob(job_id=m.group(1), returncode=proc.returncode, output=proc.stdout)


def job_info(
    job_id: str | int, *, env: Mapping[str, str] | None = None, timeout: float = 30
) -> JobInfo | None:
    """Return the state and reason of a job (squeue, then scontrol, then sacct), or None.

    Parameters
    ----------
    job_id : str or int
    env : mapping, optional
    timeout : float

    Returns
    -------
    JobInfo or None
    """
    proc = _run(["squeue", "-h", "-j", str(job_id), "-o", "%i|%T|%r|%j"], env, timeout)
    if proc.returncode == 0:
        for line in proc.stdout.splitlines():
            parts = line.strip().split("|", 3)
            if len(parts) == 4 and parts[0] == str(job_id):
                return JobInfo(*parts)
    # squeue drops finished jobs; scontrol keeps them for MinJobAge seconds
    proc = _run(["scontrol", "-o", "show", "job", str(job_id)], env, timeout)
    fields = dict(
        kv.split("=", 1) for kv in proc.stdout.split() if "=" in kv
    ) if proc.returncode == 0 else {}
    if "JobState" in fields:
        return JobInfo(str(job_id), fields["JobState"], fields.get("Reason", ""), fields.get("JobName", ""))
    return _sacct_info(job_id, env, timeout)


def _sacct_info(job_id, env, timeout) -> JobInfo | None:
    """A finished job from the accounting database (when the site keeps one), else None."""
    try:
        proc = _run(["sacct", "-n", "-X", "-P", "-j", str(job_id), "-o", "JobID,State,JobName"],
                    env, timeout)
    except SlurmError:
        return None
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0] == str(job_id):
            return JobInfo(parts[0], parts[1].split()[0], "", parts[2])
    return None


def describe_job(job_id: str | int, *, env: Mapping[str, str] | None = None) -> str:
    """One line for error messages: ``"Slurm job 812 is PENDING (Resources)"``."""
    try:
        info = job_info(job_id, env=env)
    except SlurmError as e:
        return f"Slurm job {job_id}: state unknown ({e})"
    return str(info) if info is not None else f"Slurm job {job_id} is no longer known to Slurm"


def list_jobs(
    *, name: str | None = None, env: Mapping[str, str] | None = None, timeout: float = 30
) -> list[JobInfo]:
    """Jobs squeue lists (pending, running, completing), optionally by job name.

    Raises
    ------
    SlurmError
        If squeue fails (e.g. slurmctld unreachable).
    """
    argv = ["squeue", "-h", "-o", "%i|%T|%r|%j"]
    if name is not None:
        argv += ["-n", name]
    proc = _run(argv, env, timeout)
    if proc.returncode != 0:
        raise SlurmError(f"squeue failed: {proc.stdout.strip()}")
    jobs = []
    for line in proc.stdout.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4:
            jobs.append(JobInfo(*parts))
    return jobs


def scancel(
    job_id: str | int,
    *,
    signal: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30,
) -> None:
    """Cancel (or signal) a job.

    Raises
    ------
    SlurmError
        If scancel fails for another reason than the job being already gone.
    """
    argv = ["scancel", *(["--signal", signal] if signal else []), str(job_id)]
    proc = _run(argv, env, timeout)
    if proc.returncode != 0 and "Invalid job id" not in proc.stdout:
        raise SlurmError(f"scancel {job_id} failed: {proc.stdout.strip()}")


_ENDED = {
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
    "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
}


def wait_for_job_end(
    job_id: str | int,
    timeout: float,
    *,
    env: Mapping[str, str] | None = None,
    poll: float = 0.2,
) -> JobInfo | None:
    """Poll until the job has left squeue (ended and no longer completing).

    Returns
    -------
    JobInfo or None
        The final state if Slurm still remembers it.

    Raises
    ------
    TimeoutError
        Saying what the job was doing when the time ran out.
    """
    deadline = _time.monotonic() + timeout
    while True:
        info = job_info(job_id, env=env)
        if info is None or info.state.split()[0] in _ENDED:
            return info
        if _time.monotonic() >= deadline:
            raise TimeoutError(f"after {timeout} s: {info}")
        _time.sleep(poll)


def interface_address(interface: str) -> str:
    """IPv4 address of a network interface (e.g. ``"ib0"``), for the controller.

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
        If the interface does not exist or has no IPv4 address.
    """
    import socket

    import psutil

    addrs = psutil.net_if_addrs().get(interface)
    if addrs is None:
        raise ValueError(f"interface {interface!r}: no such interface "
                         f"(there are: {', '.join(sorted(psutil.net_if_addrs()))})")
    for a in addrs:
        if a.family == socket.AF_INET:
            return a.address
    raise ValueError(f"interface {interface!r}: no IPv4 address")


def _shipped_templates() -> dict[str, str]:
    """The example templates kept in ``slurm/`` (default settings)."""
    return {
        "engines.sbatch.tmpl": render_engine_batch_template(SlurmSettings()),
        "controller.sbatch.tmpl": render_controller_batch_template(SlurmSettings()),
        "spmd.sbatch.example": render_spmd_script(
            SlurmSettings(ntasks=4, time="00:10:00"), ["python", "job.py"]
        ),
    }


if __name__ == "__main__":  # regenerate slurm/*.tmpl: python -m clusterml.launch.slurm [folder]
    import sys

    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "slurm")
    for _name, _text in _shipped_templates().items():
        (out / _name).write_text(_text)
        print(out / _name)
