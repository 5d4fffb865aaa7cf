"""Stall warnings: what a rank says when a collective waits long (no MPI here).

A rank that has waited ``stall_warning`` seconds in one of clusterml's
collectives writes one warning to stderr naming the ranks it waits for and the
likely causes, and sends each of them a small *notice* (its step and the call
it is in).  A rank that later computes with ``distributed=False`` finds the
notice (an ``Iprobe`` when its computation ends) and says on its own stderr that the others are
waiting for it -- in the same call, or in another one -- and replies, so that
the waiting rank's stderr says so too.  Neither is an error: a rank that
computes serially while the others wait may still join them afterwards (a
script that runs the same call serially on each rank first, then
distributed, is correct).  Errors come only from the collective timeout.

:mod:`clusterml.spmd.comm` does the messaging; this module holds the setting
and the words.
"""

from __future__ import annotations

import math
import os
import sys

__all__ = ["STALL_ENV", "DEFAULT_STALL", "parse_seconds", "waiting_message", "serial_message",
           "reply_message", "write"]

STALL_ENV = "CLUSTERML_STALL_WARNING"
#: Seconds a rank waits in one collective before it warns (when neither init() nor the variable says).
DEFAULT_STALL = 60.0


def parse_seconds(value, env: str, default: float | None = None) -> float | None:
    """A number of seconds from an argument or, when it is None, the variable ``env``.

    Parameters
    ----------
    value : float, str or None
        The argument; None: read ``env``.
    env : str
        The environment variable's name (also named in the error).
    default : float, optional
        What an unset or empty variable means.

    Returns
    -------
    float or None
        The seconds; None (no limit) for 0, a negative value or infinity.
    """
    value = os.environ.get(env) if value is None else value
    if value in (None, ""):
        return default
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r} (argument or {env}) must be a number of seconds") from None
    if math.isnan(seconds):
        raise ValueError(f"{value!r} (argument or {env}) must be a number of seconds")
    return seconds if 0 < seconds < math.inf else None


def _ranks(ranks, verb: str = "") -> str:
    """``rank 1 has`` / ``ranks 0, 2 have`` (``verb`` "has" or "")."""
    ranks = sorted(set(ranks))
    many = len(ranks) > 1
    text = f"rank{'s' if many else ''} {', '.join(map(str, ranks))}"
    return f"{text} {'have' if many else 'has'}" if verb else text


def _call(desc: dict | None) -> str:
    if not desc:
        return "a distributed call"
    params = ", ".join(f"{k}={v}" for k, v in desc.items() if k != "algorithm")
    return f"{desc.get('algorithm', '?')}({params})"


def waiting_message(rank: int, step: str, waited: float, awaited, parent: int | None,
                    timeout: float | None) -> str:
    """The warning of a rank that has waited ``waited`` seconds in ``step``.

    Parameters
    ----------
    rank : int
        The waiting rank.
    step : str
        The collective's step.
    waited : float
        Seconds waited so far.
    awaited : list of tuple of (int, int, int) or None
        ``(rank, lo, hi)``: ``rank`` has not arrived, ranks ``lo .. hi-1``
        report through it; None: this rank waits for the outcome from
        ``parent`` (a rank above it has not arrived).
    parent : int or None
        The rank the outcome comes from.
    timeout : float or None
        The collective timeout (None: no limit).

    Returns
    -------
    str
    """
    if awaited:
        first = sorted({a[0] for a in awaited})
        behind = sorted({r for _, lo, hi in awaited for r in range(lo, hi)} - set(first))
        who = f"for {_ranks(first)}, which {'have' if len(first) > 1 else 'has'} not arrived"
        if behind:
            who += f" ({_ranks(behind)} report through {'them' if len(first) > 1 else 'it'})"
        causes = ("Likely causes: that rank called this algorithm with distributed=False (or did "
                  "not call it: a different code path or number of distributed calls), it is "
                  "still busy with local work (loading its rows, a long serial step), or it "
                  "died or hangs.")
    else:
        who = (f"for the outcome from rank {parent} (a rank above it has not arrived; rank 0 "
               f"names it)")
        causes = ("Likely causes: a rank called with distributed=False or not at all, is still "
                  "busy, or died.")
    if timeout:
        then = f"This rank raises CollectiveTimeoutError after {timeout:g} s."
    else:
        then = ("No collective timeout is set: it waits until the job's time limit "
                "(cml.init(timeout=...) or CLUSTERML_COLLECTIVE_TIMEOUT).")
    return (f"clusterml rank {rank}: waited {waited:.1f} s in step '{step}' {who}. {causes} "
            f"{then} (Warned once per collective, after {STALL_ENV} / "
            f"cml.init(stall_warning=...) seconds.)")


def serial_message(rank: int, desc: dict, notices: list) -> str:
    """What a rank computing with ``distributed=False`` says when others wait for it.

    Parameters
    ----------
    rank : int
        This rank.
    desc : dict
        This call, described as its distributed twin (``distributed=True``).
    notices : list of dict
        The notices found: ``{"from", "step", "waited", "call"}``.

    Returns
    -------
    str
    """
    same = [n for n in notices if n.get("call") == desc]
    name = desc.get("algorithm", "?")
    if same:
        return (f"clusterml rank {rank}: computing {name} with distributed=False while "
                f"{_ranks((n['from'] for n in same), 'has')} waited "
                f"{max(n['waited'] for n in same):.1f} s in the same call with distributed=True "
                f"(step '{same[0]['step']}'). If it was meant to be distributed, they wait for "
                f"this rank until their collective timeout; if this rank joins them later with "
                f"distributed=True, all is well.")
    n = notices[0]
    return (f"clusterml rank {rank}: computing {name} with distributed=False while "
            f"{_ranks((m['from'] for m in notices), 'has')} waited {n['waited']:.1f} s for this rank "
            f"in {_call(n.get('call'))} (step '{n['step']}').")


def reply_message(rank: int, sender: int, desc: dict, same: bool) -> str:
    """What a waiting rank says when the rank it waits for replied to its notice."""
    how = "the same call" if same else "another call"
    return (f"clusterml rank {rank}: rank {sender} replied that it is computing "
            f"{desc.get('algorithm', '?')} with distributed=False ({how}); this collective waits "
            f"for it to join with distributed=True.")


def write(message: str) -> None:
    """Write ``message`` as one line to stderr (ranks' lines interleave whole)."""
    try:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # pragma: no cover - a closed stderr
        pass
