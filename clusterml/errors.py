"""Exceptions shared by every layer of clusterml.

Every error that can happen on one rank of a distributed computation is turned
into the *same* :class:`DistributedError` on every rank (see
:mod:`clusterml.spmd.comm`), so no rank is ever left waiting in a collective.
The message names the failing rank(s) and the cause of each.

A rank's exception travels in one form only, :class:`RankFailure`: between
ranks inside a collective (:mod:`clusterml.spmd.comm`), from an engine to the
notebook for a broadcast call (:mod:`clusterml.spmd.remote`) and for a farm
task (:mod:`clusterml.client.farm`).
"""

from __future__ import annotations

import pickle
import traceback as _traceback

__all__ = [
    "RankFailure",
    "DistributedError",
    "InputError",
    "ParameterError",
    "ComputeError",
    "InconsistentResultError",
    "EngineError",
    "ControllerError",
    "ClusterTimeoutError",
    "ClusterStartError",
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


class ControllerError(EngineError):
    """The cluster's ipyparallel controller is gone (exited, its Slurm job ended, or it stopped
    answering): no call can reach the engines.  ``cluster.restart()`` starts a new controller
    and engine set (for a cluster this client started)."""


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


class RankFailure:
    """One rank's (or one engine's) exception, as it travels: the one wire format.

    Small and picklable with no code of its own: type and module *names*, the
    message, the formatted traceback, the per-rank causes when the exception
    was a :class:`DistributedError`, and optionally the pickled exception
    itself (for a farm task, so the notebook can re-raise the original).

    Parameters
    ----------
    rank : int
        MPI rank (or engine id; -1 when unknown).
    etype, module, message, traceback : str
        ``type(exc).__name__``, ``type(exc).__module__``, ``str(exc)`` and the
        formatted traceback.
    causes : dict, optional
        ``rank -> (etype, message, traceback)`` of a :class:`DistributedError`.
    exception : bytes, optional
        The pickled exception (only when asked for and it round-trips).
    step : str, optional
        The collective step it was raised in, when it travels between ranks.
    """

    # the order is the pickled state's layout (__getstate__); new fields go last, never sorted
    __slots__ = ("rank", "etype", "module", "message", "traceback", "causes", "exception", "step")  # noqa: RUF023

    def __init__(self, rank: int, etype: str, module: str, message: str, traceback: str = "",
                 causes: dict | None = None, exception: bytes | None = None, step: str = ""):
        self.rank, self.etype, self.module, self.message = int(rank), etype, module, message
        self.traceback, self.causes, self.exception = traceback, dict(causes or {}), exception
        self.step = step

    @classmethod
    def from_exception(cls, exc: BaseException, rank: int = -1, skip_frames: int = 0,
                       keep: bool = False, dumps=None, step: str = "") -> RankFailure:
        """Describe ``exc``; drop ``skip_frames`` outer frames; with ``keep``, pickle it too.

        ``step`` names the collective step it was raised in (between ranks).
        """
        tb = exc.__traceback__
        for _ in range(skip_frames):  # drop a runner's own frames: start at the user's code
            if tb is not None and tb.tb_next is not None:
                tb = tb.tb_next
        text = "".join(_traceback.format_exception(type(exc), exc, tb))
        blob = None
        if keep:
            try:
                blob = (dumps or pickle.dumps)(exc)
                pickle.loads(blob)  # an exception that cannot be rebuilt travels as text only
            except Exception:
                blob = None
        causes = exc.causes if isinstance(exc, DistributedError) else {}
        return cls(rank, type(exc).__name__, type(exc).__module__, str(exc), text, causes, blob, step)

    def cause(self) -> tuple:
        """``(etype, message, traceback)``: an entry of :attr:`DistributedError.causes`."""
        return (self.etype, self.message, self.traceback)

    def error_class(self) -> type | None:
        """The :class:`DistributedError` subclass raised, or None for any other exception.

        Only an already imported module is looked at, so a failure never imports code.
        """
        import sys

        mod = sys.modules.get(self.module)
        cls = getattr(mod, self.etype, None) if mod is not None else None
        if isinstance(cls, type) and issubclass(cls, DistributedError):
            return cls
        return None

    def original(self) -> BaseException | None:
        """The exception itself, when it was kept and can be rebuilt here."""
        if self.exception is None:
            return None
        try:
            return pickle.loads(self.exception)
        except Exception:
            return None

    def __getstate__(self):
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state):
        self.step = ""  # a failure pickled before ``step`` existed
        for k, v in zip(self.__slots__, state, strict=False):
            setattr(self, k, v)

    def __repr__(self):
        return f"RankFailure(rank={self.rank}, {self.etype}: {self.message!r})"


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
