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
    "CollectiveTimeoutError",
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


class CollectiveTimeoutError(DistributedError, TimeoutError):
    """A rank waited longer than the collective timeout in one of clusterml's collectives.

    Set by ``clusterml.init(timeout=...)`` or ``CLUSTERML_COLLECTIVE_TIMEOUT``.
    ``ranks`` are the ranks that never arrived (as far as this rank can
    tell).  After it, clusterml's communicator is unusable.
    """

    @staticmethod
    def describe(missing, step: str = "", timeout: float | None = None) -> str:
        """The message for ``missing``: ``(rank, lo, hi)`` triples (rank never arrived;
        ranks lo .. hi-1 report through it)."""
        ranks = sorted({m[0] for m in missing})
        names = ", ".join(map(str, ranks))
        behind = sorted({r for _, lo, hi in missing for r in range(lo, hi)} - set(ranks))
        where = f" in step '{step}'" if step else ""
        after = f" after {timeout:g} s" if timeout else ""
        msg = (f"collective timed out{where}{after}: rank{'s' if len(ranks) > 1 else ''} "
               f"{names} never arrived")
        if behind:
            msg += (f" (ranks {', '.join(map(str, behind))} report through "
                    f"{'them' if len(ranks) > 1 else 'it'} and were not heard from either)")
        return msg

    @classmethod
    def naming(cls, missing, step: str = "", timeout: float | None = None):
        """The error naming the ``missing`` ranks (see :meth:`describe`)."""
        msg = cls.describe(missing, step, timeout)
        return cls(msg, {m[0]: ("CollectiveTimeoutError", "never arrived", "") for m in missing})
