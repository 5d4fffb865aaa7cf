"""Exceptions shared by every layer of clusterml.

Every error that can happen on one rank of a distributed computation is turned
into the *same* :class:`DistributedError` on every rank (see
:mod:`clusterml.spmd.comm`), so no rank is ever left waiting in a collective.
The message names the failing rank(s) and the cause of each.
"""

from __future__ import annotations

__all__ = [
    "DistributedError",
    "InputError",
    "ParameterError",
    "ComputeError",
    "InconsistentResultError",
    "EngineError",
    "ClusterTimeoutError",
    "ClusterStartError",
]


class DistributedError(RuntimeError):
    """An error on one or more ranks of a distributed computation.

    Parameters
    ----------
    message : str
        Human-readable summary; it names the failing rank(s) and causes.
    causes : dict of int to tuple of (str, str, str), optional
        ``rank -> (exception type name, message, formatted traceback)`` for
        every rank that failed.  Empty when the error was detected from
        values every rank already shares (for instance a bad parameter).

    Attributes
    ----------
    ranks : list of int
        The failing ranks, sorted.
    causes : dict
        As above.
    """

    def __init__(self, message: str, causes: dict | None = None):
        super().__init__(message)
        self.causes = dict(causes or {})

    @property
    def ranks(self) -> list[int]:
        return sorted(self.causes)

    def remote_traceback(self) -> str:
        """Return the formatted tracebacks of every failing rank."""
        parts = []
        for rank in self.ranks:
            etype, msg, tb = self.causes[rank]
            parts.append(f"--- rank {rank}: {etype}: {msg}\n{tb}".rstrip())
        return "\n".join(parts)

    # Exceptions with extra constructor arguments do not pickle by default;
    # ipyparallel ships them from engines to the client, so they must.
    def __reduce__(self):
        return (self.__class__, (str(self), self.causes))


class InputError(DistributedError, ValueError):
    """Bad input data: a missing file, NaN, mismatched columns, ..."""


class ParameterError(DistributedError, ValueError):
    """A bad parameter of an algorithm (the same on every rank)."""


class ComputeError(DistributedError):
    """An exception raised inside a computation on one or more ranks."""


class InconsistentResultError(DistributedError):
    """Engines returned different results for one broadcast call."""


class EngineError(DistributedError):
    """An engine died or stopped answering; the MPI engine set must restart."""


class ClusterTimeoutError(DistributedError, TimeoutError):
    """A wait (engine start, a call) ran out; the message says what was waited for."""


class ClusterStartError(EngineError):
    """A cluster did not start: the engines' job ended, can never run, or timed out.

    The message has one fact per line: ``Slurm job <id> <STATE>`` (for a Slurm
    job), ``engine log (last lines):`` and its tail, ``cause: ...`` and
    ``fix: ...``.  Everything the failed start had started is stopped before
    it is raised.
    """


class ClusterStartTimeoutError(ClusterStartError, ClusterTimeoutError):
    """A :class:`ClusterStartError` because the engines did not register in time."""
