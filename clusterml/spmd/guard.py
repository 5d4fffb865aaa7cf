"""Guarded steps: the part of the SPMD runtime that needs no MPI.

A *guarded* step runs a rank's local work as a function; if it raises, the
rank still takes part in the collective, carrying its :class:`Failure`
instead of a value, and every rank then raises the same
:class:`~clusterml.errors.DistributedError` naming the failing ranks (see
:func:`raise_failures`).  :class:`Context` writes every collective an
algorithm uses (``allgather``, ``fold``, ``sum``, ``bcast_from``, ``local``,
``check``) on top of two primitives a subclass provides: :meth:`Context._tree`
(a fixed-order reduction whose result every rank receives) and
:meth:`Context._bcast0`.  :class:`SerialContext` is one process;
:class:`clusterml.spmd.comm.MPIContext` is the ranks of clusterml's communicator.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import ComputeError, DistributedError, RankFailure

__all__ = ["Failure", "rank_failure", "raise_failures", "Context", "SerialContext", "Outcome", "agreed",
           "is_agreed"]

# Fault injection for the reliability tests: "step@rank[:kill][,step@rank...]";
# a guarded step whose name matches raises on that rank ("*" matches any step
# or rank), or, with ":kill", the process SIGKILLs itself there (a crashed rank).
_FAULT_ENV = "CLUSTERML_INJECT_FAULT"


#: What a rank contributes to a collective when its local step raised: the one wire format of a
#: rank's exception, between ranks as from engine to notebook (:class:`clusterml.errors.RankFailure`).
Failure = RankFailure


def rank_failure(rank: int, exc: BaseException, step: str = "") -> RankFailure:
    """``exc`` raised on ``rank`` in ``step``; an out-of-memory error says what to do about it."""
    try:
        f = RankFailure.from_exception(exc, rank, step=step)
    except MemoryError:  # pragma: no cover - no memory even for the traceback
        f = RankFailure(rank, type(exc).__name__, type(exc).__module__, str(exc), step=step)
    if isinstance(exc, MemoryError):
        f.message = (f"out of memory{': ' + f.message if f.message else ''} (the "
                     f"rank's memory limit was reached: Slurm --mem, ulimit -v or the "
                     f"node's RAM; use more ranks or a smaller problem)")
    return f


def raise_failures(failures: Sequence[Failure], step: str = ""):
    """Raise one DistributedError describing every failure (identically on all ranks)."""
    if not failures:
        return
    failures = sorted(failures, key=lambda f: f.rank)
    steps = {f.step for f in failures}
    if len(steps) == 1 and "" not in steps:
        step = steps.pop()  # where the failure happened (the same text on every rank)
    classes = {f.error_class() for f in failures}
    cls = classes.pop() if len(classes) == 1 and None not in classes else ComputeError
    lines = []
    for f in failures:
        if f.error_class() is not None:
            lines.append(f"rank {f.rank}: {f.message}")
        else:
            lines.append(f"rank {f.rank}: {f.etype}: {f.message}")
    where = f" in step '{step}'" if step else ""
    ranks = ", ".join(str(f.rank) for f in failures)
    head = f"failed on rank{'s' if len(failures) > 1 else ''} {ranks}{where}"
    msg = head + (": " + lines[0].split(": ", 1)[1] if len(lines) == 1 else ":\n  " + "\n  ".join(lines))
    raise agreed(cls(msg, {f.rank: (f.etype, f.message, f.traceback) for f in failures}))


def agreed(exc: BaseException) -> BaseException:
    """Mark ``exc`` as raised on every rank alike (compute() need not agree on it again)."""
    exc._clusterml_agreed = True
    return exc


def is_agreed(exc: BaseException) -> bool:
    return getattr(exc, "_clusterml_agreed", False)


def _injected(step: str, rank: int) -> str | None:
    """The fault injected into ``step`` on ``rank``: None, "raise" or "kill"."""
    spec = os.environ.get(_FAULT_ENV)
    if not spec:
        return None
    for item in spec.split(","):
        name, _, where = item.strip().partition("@")
        where, _, action = where.partition(":")
        if name in (step, "*") and where in (str(rank), "*", ""):
            return action or "raise"
    return None


def _run_local(step: str, rank: int, fn: Callable, args, kwargs):
    try:
        fault = _injected(step, rank)
        if fault == "kill":
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        if fault is not None:
            raise RuntimeError(f"fault injected into step '{step}' ({_FAULT_ENV})")
        return fn(*args, **kwargs), None
    except Exception as exc:
        return None, rank_failure(rank, exc, step)




class Outcome:
    """What a subtree of ranks contributes: a value, or the failures and missing ranks.

    Attributes
    ----------
    value : object
        The merged value of the subtree (when ``ok``).
    failures : list of Failure
    missing : list of tuple of (int, int, int)
        ``(rank, lo, hi)``: ``rank`` never arrived (ranks ``lo .. hi-1``
        report through it).
    """

    __slots__ = ("value", "failures", "missing")  # noqa: RUF023 - the pickled state's order

    def __init__(self, value=None, failures=(), missing=()):
        self.value = value
        self.failures = list(failures)
        self.missing = list(missing)

    @property
    def ok(self) -> bool:
        return not self.failures and not self.missing

    def __getstate__(self):
        return (None if not self.ok else self.value, self.failures, self.missing)

    def __setstate__(self, state):
        self.value, self.failures, self.missing = state

    def combine(self, other: Outcome, merge: Callable, rank: int) -> Outcome:
        """This subtree's outcome followed (in rank order) by ``other``'s."""
        if self.ok and other.ok:
            try:
                return Outcome(merge(self.value, other.value))
            except Exception as exc:
                return Outcome(failures=[rank_failure(rank, exc, "merge")])
        return Outcome(failures=self.failures + other.failures,
                       missing=self.missing + other.missing)


class Context:
    """Collectives an algorithm uses; rank and size of the computation.

    Every collective is one reduction tree: each rank's guarded local value
    (or its failure) is merged in rank order and the same verdict reaches
    every rank; on failure every rank raises the same error.
    """

    rank: int = 0
    size: int = 1
    distributed: bool = False

    def _tree(self, outcome: Outcome, merge: Callable, step: str, packed: bool) -> Any:
        """Reduce every rank's ``outcome`` with ``merge`` in rank order; return the value.

        Raises the agreed error on every rank when an outcome failed.
        ``packed``: the values are sets of arrays (sent without pickling).
        """
        raise NotImplementedError  # pragma: no cover - abstract

    def _bcast0(self, outcome: Outcome | None, step: str) -> Any:  # pragma: no cover - abstract
        """Give rank 0's value to every rank (or raise its failure everywhere)."""
        raise NotImplementedError

    def _exchange(self, outcome: Outcome, step: str) -> list:  # pragma: no cover - abstract
        """Deliver payload ``r`` of every rank's ``outcome`` to rank ``r``; return what came, by sender."""
        raise NotImplementedError

    def _guarded(self, fn, args, kwargs, step) -> Outcome:
        value, failure = _run_local(step, self.rank, fn, args, kwargs)
        return Outcome(value) if failure is None else Outcome(failures=[failure])

    def allgather(self, fn: Callable, *args, step: str | None = None, **kwargs) -> list:
        """Run ``fn(*args, **kwargs)`` locally and gather every rank's value, in rank order.

        If ``fn`` raises on any rank, every rank raises the same
        :class:`~clusterml.errors.DistributedError`.
        """
        step = step or getattr(fn, "__name__", "step")
        out = self._guarded(fn, args, kwargs, step)
        if out.ok:
            out.value = [out.value]
        return self._tree(out, _concat, step, packed=False)

    def fold(self, fn: Callable, merge: Callable, *args, step: str | None = None, **kwargs):
        """Merge ``fn``'s per-rank summaries with ``merge`` in a fixed rank order (O(log p)).

        ``merge(a, b)`` must be associative and pure; ``a`` covers rows before
        ``b``'s.  The bracketing depends only on the number of ranks, and the
        result is computed once and sent to every rank, so every rank holds
        the same bits.
        """
        step = step or getattr(fn, "__name__", "step")
        return self._tree(self._guarded(fn, args, kwargs, step), merge, step, packed=True)

    def sum(self, fn: Callable, *args, step: str | None = None, **kwargs):
        """Sum ``fn``'s per-rank values (arrays or tuples of arrays) in rank order."""
        return self.fold(fn, _add, *args, step=step, **kwargs)

    def bcast_from(self, root: int, fn: Callable, *args, step: str | None = None, **kwargs):
        """Run ``fn`` on ``root`` only and give its value to every rank (guarded)."""
        step = step or getattr(fn, "__name__", "step")
        if root == 0:
            out = self._guarded(fn, args, kwargs, step) if self.rank == 0 else None
            return self._bcast0(out, step)
        out = self._guarded(fn, args, kwargs, step) if self.rank == root else Outcome(_NOTHING)
        return self._tree(out, _pick, step, packed=False)

    def alltoall(self, fn: Callable, *args, step: str | None = None, **kwargs) -> list:
        """Run ``fn`` (one payload per rank) and deliver payload ``r`` to rank ``r``.

        Point to point: only rank ``r``'s payload reaches rank ``r``.  If
        ``fn`` raises on any rank (or does not return ``size`` payloads),
        every rank raises the same error; under a collective timeout, a rank
        that never sends becomes CollectiveTimeoutError naming it.

        Returns
        -------
        list
            The payloads this rank received, one per rank, in rank order.
        """
        step = step or getattr(fn, "__name__", "step")
        out = self._guarded(_one_per_rank, (fn, self.size, args, kwargs), {}, step)
        return self._exchange(out, step)

    def local(self, fn: Callable, *args, step: str | None = None, **kwargs):
        """Run local work whose value stays on this rank; agree on errors in one collective.

        Only a success flag crosses the network (the value may be a rank's
        whole block of predictions); failure details travel only when
        something failed, yet every rank raises the same error.
        """
        step = step or getattr(fn, "__name__", "step")
        out = self._guarded(fn, args, kwargs, step)
        value, out.value = out.value, None
        self._tree(out, _none, step, packed=True)
        return value

    def check(self, fn: Callable, *args, step: str | None = None, **kwargs) -> None:
        """Run a local validation on every rank; raise everywhere if it failed anywhere."""
        self.local(fn, *args, step=step, **kwargs)

    def close(self, exc: BaseException | None, step: str) -> None:
        """End a distributed ``compute()``: agree that every rank got through it.

        A rank on which the computation raised outside any guarded step
        (``exc``: a MemoryError in a finalize, say) joins the collective the
        others are in -- their next step, or this one -- with its failure, so
        every rank raises the same error instead of waiting.  When every rank
        raised the same error, that error is raised as it was.
        """
        out = Outcome(None) if exc is None else Outcome(failures=[rank_failure(self.rank, exc, step)])
        try:
            self._tree(out, _none, step, packed=True)
        except DistributedError as err:
            same = {(c[0], c[1]) for c in err.causes.values()}
            if exc is not None and len(err.causes) == self.size and \
                    same == {(type(exc).__name__, str(exc))}:
                raise agreed(exc) from None
            raise

    def agree(self, key: bytes, describe: Callable[[], dict], failure: BaseException | None,
              step: str = "agree") -> None:
        """Check every rank passed the same ``key`` (a digest); raise ParameterError if not.

        Only ``{key: number of ranks}`` travels up the tree (one entry when
        all agree).

        ``describe()`` gives this rank's ``{name: value repr}``; it is only
        gathered when the keys differ, and the error names the ranks and the
        differing values.  ``failure``: this rank's own error (raised on every
        rank, as a ParameterError when it is one).
        """
        out = Outcome({key: 1}) if failure is None else \
            Outcome(failures=[rank_failure(self.rank, failure)])
        groups = self._tree(out, _group, step, packed=False)
        if len(groups) > 1:
            descs = self.allgather(describe, step=step + " (details)")
            raise agreed(_mismatch(groups, descs))


_NOTHING = "__clusterml_nothing__"


def _one_per_rank(fn: Callable, size: int, args, kwargs) -> list:
    payloads = list(fn(*args, **kwargs))
    if len(payloads) != size:
        raise ValueError(f"an exchange needs one payload per rank ({size}), got {len(payloads)}")
    return payloads


def _concat(a: list, b: list) -> list:
    return a + b


def _pick(a, b):
    return b if isinstance(a, str) and a == _NOTHING else a


def _none(a, b):
    return None


def _group(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def _mismatch(groups: dict, descs: list):
    from ..errors import ParameterError

    reprs = [repr(sorted(d.items())) for d in descs]
    ref = descs[max(range(len(descs)), key=lambda r: (reprs.count(reprs[r]), -r))]
    names = sorted({n for d in descs for n in d})
    differing = [n for n in names if len({repr(d.get(n)) for d in descs}) > 1]
    if "algorithm" in differing:  # different calls: their parameters do not compare
        differing = ["algorithm"]
    parts = []
    for n in differing:
        by_value: dict = {}
        for r, d in enumerate(descs):
            by_value.setdefault(d.get(n, "<missing>"), []).append(r)
        parts.append(f"{n}: " + "; ".join(f"{v} on rank{'s' if len(rs) > 1 else ''} "
                                          f"{_ranges(rs)}" for v, rs in by_value.items()))
    odd = [r for r in range(len(descs)) if descs[r] != ref]
    msg = ("the ranks disagree on the call (every rank must make the same call with the same "
           "parameters): " + ("; ".join(parts) if parts else "digests differ"))
    return ParameterError(msg, {r: ("ParameterError", msg, "") for r in odd})


def _ranges(ranks) -> str:
    ranks = sorted(ranks)
    out, start = [], ranks[0]
    for prev, cur in zip(ranks, ranks[1:] + [None], strict=True):
        if cur != prev + 1:
            out.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(out)


def _add(a, b):
    if isinstance(a, tuple):
        return tuple(x + y for x, y in zip(a, b, strict=True))
    return a + b


class SerialContext(Context):
    """One process, no MPI (``distributed=False``)."""

    def _tree(self, outcome, merge, step, packed):
        return _verdict(outcome, step)

    def _bcast0(self, outcome, step):
        return _verdict(outcome, step)

    def _exchange(self, outcome, step):
        return [_verdict(outcome, step)[0]]


def _verdict(outcome: Outcome, step: str):
    """The value of an outcome every rank holds, or the agreed error."""
    if outcome.missing:
        from ..errors import CollectiveTimeoutError

        raise agreed(CollectiveTimeoutError.naming(outcome.missing, step))
    raise_failures(outcome.failures, step)
    return outcome.value
