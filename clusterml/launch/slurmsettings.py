"""Settings of clusterml's Slurm batch scripts and the checks every value passes.

:class:`SlurmSettings` holds what a site and a job ask of Slurm (account,
partition, time, resources, setup lines, the engines' environment, how tasks
form one MPI world); :func:`validate_settings` checks every value before
:mod:`clusterml.launch.slurm` renders a script from them.

Values that go into ``#SBATCH`` lines cannot be shell-quoted (bash never reads
those lines; sbatch parses them with its own rules), so they are validated
instead (:func:`sbatch_value`): control characters (a newline above all),
``"`` and ``\\`` are refused with a :class:`ValueError`; a value with spaces
or other punctuation is wrapped in double quotes, which sbatch strips. NUL is
refused in every value, so the renderer's placeholders can never collide with
one.

Pure: no file, no process, no Slurm command.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["MPI_MODES", "SlurmSettings", "validate_settings", "sbatch_value", "extra_option",
           "no_nul", "positive_int"]

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
def no_nul(name: str, value: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{name}={value!r}: contains a NUL character")
    return value


def sbatch_value(name: str, value: object) -> str:
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


def positive_int(name: str, value: object) -> int:
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
            sbatch_value(name, value)
    if s.time is not None and not _TIME.match(str(s.time)):
        raise ValueError(
            f"time={s.time!r}: expected a Slurm time such as '30', '01:00:00' or '1-12:00'"
        )
    if s.mem is not None and not _MEM.match(str(s.mem)):
        raise ValueError(f"mem={s.mem!r}: expected a size such as '4000', '4G' or '512M'")
    for name in ("nodes", "ntasks", "ntasks_per_node", "cpus_per_task"):
        value = getattr(s, name)
        if value is not None:
            positive_int(name, value)
    for i, opt in enumerate(_seq("extra_sbatch", s.extra_sbatch)):
        _one_line(f"extra_sbatch[{i}]", opt)
        if not extra_option(opt).startswith("-"):
            raise ValueError(f"extra_sbatch[{i}]={opt!r}: expected an option such as '--qos=debug'")
    for i, line in enumerate(_seq("setup", s.setup)):
        _one_line(f"setup[{i}]", line)
    for i, arg in enumerate(_seq("srun_args", s.srun_args)):
        if not isinstance(arg, str):
            raise ValueError(f"srun_args[{i}]={arg!r}: expected a string")
        no_nul(f"srun_args[{i}]", arg)
    if s.venv is not None:
        no_nul("venv", str(s.venv))
    if not isinstance(s.env, Mapping):
        raise ValueError(f"env={s.env!r}: expected a mapping of names to strings")
    for key, value in s.env.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise ValueError(f"env: {key!r} is not a valid variable name")
        no_nul(f"env[{key!r}]", str(value))
    if s.mpi not in MPI_MODES:
        raise ValueError(f"mpi={s.mpi!r}: expected one of {', '.join(MPI_MODES)}")
    no_nul("mpiexec", str(s.mpiexec))
    return s


def extra_option(opt: str) -> str:
    opt = opt.strip()
    if opt.startswith("#SBATCH"):
        opt = opt[len("#SBATCH"):].strip()
    return opt
