"""Slurm batch scripts for clusterml, rendered by pure functions.

Three scripts are rendered from one :class:`~clusterml.launch.slurmsettings.SlurmSettings`:

- the **engines** job: ``ntasks`` tasks forming ONE MPI world, each an ipyparallel
  engine started with ``--mpi`` so that engine id == MPI rank
  (:func:`render_engine_script`, or :func:`render_engine_batch_template` for
  ipyparallel's ``SlurmEngineSetLauncher.batch_template``);
- a **controller** on a compute node (:func:`render_controller_script`,
  :func:`render_controller_batch_template`);
- a plain **SPMD** program under ``srun`` with no Jupyter at all
  (:func:`render_spmd_script`).

Rendering is pure: settings in, text out, no process started and no Slurm
command run (submitting and asking Slurm: :mod:`clusterml.launch.slurmctl`).
Every user value that reaches the shell is quoted with :func:`shlex.quote`;
values for ``#SBATCH`` lines are checked by
:mod:`clusterml.launch.slurmsettings`. Setup lines and extra ``#SBATCH``
options are the user's own shell code / sbatch options and are written
verbatim (one line each, no newline). :func:`write_batch_script` writes a
rendered script with mode 0700.

ipyparallel formats ``batch_template`` with :class:`IPython.utils.text.EvalFormatter`
(``str.format`` rules, fields evaluated as expressions), filling ``{n}``,
``{program_and_args}``, ``{output_file}``, ... The ``*_batch_template`` functions
therefore return a script in which every literal brace is doubled and only those
placeholders remain.

This module imports neither mpi4py nor ipyparallel nor subprocess.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from .slurmsettings import SlurmSettings, extra_option, no_nul, positive_int, sbatch_value, validate_settings

__all__ = [
    "render_spmd_script",
    "render_engine_script",
    "render_engine_batch_template",
    "render_controller_script",
    "render_controller_batch_template",
    "write_batch_script",
]

# NUL is refused in every user value, so these placeholders can never collide.
_N = "\x00n\x00"
_PROGRAM = "\x00program_and_args\x00"
_OUTPUT = "\x00output_file\x00"
_CLUSTER_ID = "\x00cluster_id\x00"


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
            sb.append(f"#SBATCH --{flag}={sbatch_value(name, value)}")

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
    sb.extend(f"#SBATCH {extra_option(o)}" for o in s.extra_sbatch)

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
        no_nul(name, a)
    return shlex.join(argv)


def _output(s: SlurmSettings, template: bool) -> str | None:
    if s.output is not None:
        return sbatch_value("output", s.output)
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
    positive_int("n", n)
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
