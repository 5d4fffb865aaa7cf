"""The geometry and the messages of clusterml's collectives (no MPI here).

Every collective of :class:`clusterml.spmd.comm.MPIContext` is a binomial
tree in rank order over point-to-point messages: rank *r* merges its children
*r+1, r+2, r+4, ...* (each covers the ranks after the previous one) and sends
the result to *r - lowbit(r)*; rank 0 ends with every rank's value merged in
one fixed bracketing per *p*, and its encoded verdict (the value, or the
failures) goes back down the same tree byte for byte.  An exchange
(``alltoall``) is one message from every rank to every other.
"""

from __future__ import annotations

import numpy as np

from . import packing
from .guard import Outcome

__all__ = ["NOTICE", "UP", "DOWN", "SWAP", "SPIN_SECONDS", "VALUE", "FAILED", "children", "parent",
           "encode"]

#: A collective's four tags (offsets): stall notices and replies, the tree up and down, an exchange.
NOTICE, UP, DOWN, SWAP = 0, 1, 2, 3
#: A wait polls without yielding for 2 ms (a yielded core comes back a time slice later), then
#: yields between polls until 50 ms, then sleeps between polls.
SPIN_SECONDS = (0.002, 0.05)
#: The first byte of a message: a value, or the failures (and missing ranks).
VALUE, FAILED = 0, 1


def children(rank: int, size: int) -> list[tuple[int, int]]:
    """``(child, distance)`` of ``rank`` in the binomial tree, nearest first."""
    out, s = [], 1
    while s < size and not rank & s:
        if rank + s < size:
            out.append((rank + s, s))
        s <<= 1
    return out


def parent(rank: int) -> int | None:
    return None if rank == 0 else rank - (rank & -rank)


def encode(outcome: Outcome, packed: bool) -> np.ndarray:
    """One message: a flag byte, then the value (packed arrays or pickle) or the failures."""
    if outcome.ok:
        body = packing.encode(outcome.value) if packed else packing.encode_pickle(outcome.value)
        flag = VALUE
    else:
        body, flag = packing.encode_pickle(outcome), FAILED
    buf = np.empty(body.nbytes + 1, dtype=np.uint8)
    buf[0] = flag
    buf[1:] = body
    return buf
