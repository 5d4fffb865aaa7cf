"""The health of a :class:`~clusterml.Cluster`'s engines: lost ranks, launcher state, waits.

Public: everything that waits on the engines — the facade's broadcast calls
(:mod:`clusterml.client.calls`) and the task farm (:mod:`clusterml.client.farm`)
— goes through :class:`Health`, reached as ``cluster.health``.  It answers

* which ranks are gone (:meth:`Health.lost_ranks`, :meth:`Health.dead_ranks`),
* how the engine launcher (``mpiexec``, a Slurm job) is doing
  (:meth:`Health.launcher_exit`, :meth:`Health.launcher_state`,
  :meth:`Health.launcher_output`),
* whether the MPI engine set is still usable (:attr:`Health.broken`,
  :meth:`Health.mark_broken`, :meth:`Health.check_usable`),
* whether the controller is still there (:meth:`Health.check_controller`, the
  looks of :mod:`clusterml.client.controller`: a gone controller is a
  :class:`~clusterml.ControllerError`),
* which engines are alive but stopped (SIGSTOP: :meth:`Health.stopped_ranks`),

and waits for replies with a deadline, watching the controller, dead engines and Ctrl-C
(:meth:`Health.wait`), interrupting the engines when the wait ends early
(:meth:`Health.interrupt`).  MPI cannot lose a rank: once a rank is gone the
whole engine set must be replaced with :meth:`Cluster.restart`, so every
path here ends in an :class:`~clusterml.EngineError` naming the lost ranks.
"""

from __future__ import annotations

import logging
import signal
import socket
import time

import psutil

from ..errors import ClusterTimeoutError, ControllerError, EngineError
from ..spmd.remote import Entry
from .controller import controller_problem

__all__ = ["Health", "INTERRUPT_GRACE", "POLL", "process_alive"]

log = logging.getLogger("clusterml.client")

#: How long interrupted engines get to answer before the facade gives up on them, in seconds.
INTERRUPT_GRACE = 5.0
#: Poll interval of every wait: short, so a dead engine is noticed quickly.
POLL = 0.1
# Seconds between seeing a rank gone and naming every rank gone (see Health._engines_lost).
LOST_SETTLE = 0.3


def process_alive(pid: int, create_time: float | None = None) -> psutil.Process | None:
    """The process ``pid`` if it still runs (and, given ``create_time``, is not a reused pid)."""
    try:
        p = psutil.Process(pid)
        if create_time is not None and abs(p.create_time() - create_time) > 1e-3:
            return None
        if p.status() == psutil.STATUS_ZOMBIE:
            return None
        return p
    except psutil.Error:
        return None


def _ids(ar) -> list:
    return list(ar.engine_id if isinstance(ar.engine_id, list) else [ar.engine_id])


class Health:
    """The engine-health view of one cluster (``cluster.health``; cheap, holds no state).

    Parameters
    ----------
    cluster : clusterml.Cluster
    """

    __slots__ = ("_c",)

    def __init__(self, cluster):
        self._c = cluster

    # -- state -----------------------------------------------------------------
    @property
    def broken(self) -> str | None:
        """Why the engine set needs :meth:`Cluster.restart`, or None while it is usable."""
        return self._c._broken

    def mark_broken(self, reason: str) -> str:
        """Record that the engine set is unusable (a rank died or ignored an interrupt)."""
        self._c._broken = reason
        return reason

    @property
    def generation(self) -> int:
        """Increases whenever the engines are replaced (restart, stop); caches key on it."""
        return self._c._generation

    def check_usable(self) -> None:
        """Raise :class:`~clusterml.EngineError` unless a call can be sent now."""
        c = self._c
        if c._client is None:
            raise EngineError("the cluster is not running; call start() (or restart())")
        self.check_controller(probe=False)
        if self.broken:
            raise EngineError(f"{self.broken}\nCall cluster.restart() to get a new MPI engine set.")
        lost = self.lost_ranks()
        if lost:
            self.mark_broken(f"engine(s) of rank(s) {', '.join(map(str, lost))} are gone")
            raise EngineError(f"{self.broken}; MPI cannot lose a rank: call cluster.restart()")

    # -- the controller (clusterml/client/controller.py) --------------------------
    def controller_fix(self) -> str:
        """What to do once the controller is gone (depends on who started the cluster)."""
        if self._c._owned:
            return "call cluster.restart() for a new controller and engine set"
        return ("this client only attached to the cluster (Cluster.connect): start it again where it "
                "was started (e.g. clusterml start), then Cluster.connect() again")

    def check_controller(self, what: str | None = None, probe: bool = True) -> None:
        """Raise :class:`~clusterml.ControllerError` if the controller is gone (the cluster is then broken).

        Parameters
        ----------
        what : str, optional
            The call being waited for, for the message.
        probe : bool
            Also probe through the client's connection (see
            :func:`clusterml.client.controller.controller_problem`).
        """
        c = self._c
        if not c._controller_gone:
            why = controller_problem(c, probe)
            if why is None:
                return
            c._controller_gone = why + (f" (seen during {what})" if what else "")
            self.mark_broken(f"the cluster's controller is gone: {c._controller_gone}")
        raise ControllerError(f"the cluster's controller is gone: {c._controller_gone}. No call can "
                              f"reach the engines: {self.controller_fix()}.")

    def stopped_ranks(self) -> list:
        """Ranks whose engine process on this host is alive but stopped (SIGSTOP, a suspended job)."""
        here = socket.gethostname()
        out = []
        for e in self._c.engines:
            p = process_alive(e["pid"], e.get("create_time")) if e["host"] == here else None
            try:
                if p is not None and p.status() == psutil.STATUS_STOPPED:
                    out.append(e["rank"])
            except psutil.Error:
                pass
        return out

    def frozen_note(self, ranks) -> str:
        """' Rank(s) X are alive but stopped ...' for the ranks of ``ranks`` that are ('' if none)."""
        ranks = set(ranks)
        stopped = [r for r in self.stopped_ranks() if r in ranks]
        here = socket.gethostname()
        remote = sorted(e["rank"] for e in self._c.engines if e["rank"] in ranks and e["host"] != here)
        note = ""
        if stopped:
            pids = {e["rank"]: e["pid"] for e in self._c.engines}
            note += (f" Rank(s) {', '.join(map(str, stopped))} "
                     f"(pid {', '.join(str(pids[r]) for r in stopped)}) are alive but stopped "
                     f"(SIGSTOP, a debugger, a suspended job), not dead: they "
                     f"continue after SIGCONT (kill -CONT pid); restart() replaces them either way.")
        if remote:
            note += (f" Whether rank(s) {', '.join(map(str, remote))} (on other hosts) are stopped or "
                     f"dead is not known here.")
        return note

    def lost_ranks(self) -> list:
        """Ranks whose engine is known to be gone (a dead local process, or unregistered)."""
        c = self._c
        lost = set()
        here = socket.gethostname()
        for e in c.engines:
            if e["host"] == here and process_alive(e["pid"], e.get("create_time")) is None:
                lost.add(e["rank"])
        if c._client is not None and c.engines:
            ids = set(c._client.ids)
            lost |= {e["rank"] for e in c.engines if e["rank"] not in ids}
        return sorted(lost)

    def dead_ranks(self) -> list:
        """:meth:`lost_ranks`, or every rank once the engine launcher has ended."""
        c = self._c
        if not c.engines:
            return []
        lost = self.lost_ranks()
        if not lost and self.launcher_exit():
            lost = [e["rank"] for e in c.engines]
        return lost

    # -- the launcher (mpiexec, a Slurm job) -------------------------------------
    def _engine_sets(self) -> list:
        ipc = self._c._ipp
        return list(ipc.engines.values()) if ipc is not None else []

    def launcher_exit(self) -> str | None:
        """How the engine launcher ended, or None while it runs."""
        for es in self._engine_sets():
            if es.state == "after":
                return f"launcher exited: {es.stop_data}"
            proc = getattr(es, "process", None)
            if proc is not None:
                try:
                    if not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE:
                        return f"{' '.join(es.args[:1])} (pid {proc.pid}) exited"
                except psutil.Error:
                    return f"launcher process {proc.pid} is gone"
        return None

    def launcher_output(self, limit: int = 30) -> str:
        """The last ``limit`` lines of every engine launcher's output ('' if none)."""
        out = []
        for es in self._engine_sets():
            try:
                text = es.get_output()
            except Exception:
                text = ""
            if text:
                out.append("".join(text.splitlines(True)[-limit:]))
        return ("engine output:\n" + "\n".join(out)) if out else ""

    def launcher_state(self) -> str:
        """One line: how each engine launcher is doing (for timeout messages)."""
        ended = self.launcher_exit()
        if ended:
            return ended
        sets = self._engine_sets()
        if not sets:
            return "no engine launcher"
        return "; ".join(f"{type(es).__name__} {es.state}"
                         + (f" (pid {es.pid})" if getattr(es, "pid", -1) > 0 else "") for es in sets)

    # -- replies -----------------------------------------------------------------
    def pending_ranks(self, ar) -> list:
        """Engines of ``ar`` that have not replied yet."""
        client = self._c._client
        out = client.outstanding if client is not None else set()
        return [e for e, m in zip(_ids(ar), ar.msg_ids, strict=False) if m in out]

    def where(self, ar) -> str:
        """'still running on rank(s) ..., finished on rank(s) ...' for messages."""
        pending = self.pending_ranks(ar)
        done = [r for r in _ids(ar) if r not in pending]
        return (f"still running on rank(s) {', '.join(map(str, pending)) or 'none'}"
                + (f", finished on rank(s) {', '.join(map(str, done))}" if done else ""))

    def abandon(self, ar) -> None:
        """Ask the controller to drop ``ar`` (never blocks, never raises)."""
        try:
            self._c._client.abort(jobs=ar, block=False)
        except Exception:
            pass

    def wait(self, ar, timeout: float | None, what: str) -> None:
        """Wait until ``ar`` is ready, in short steps, watching dead engines, the deadline, Ctrl-C.

        Parameters
        ----------
        ar : ipyparallel.AsyncResult
        timeout : float or None
            Seconds (None: the cluster's ``timeout``).
        what : str
            What is waited for, for messages (``"kmeans.compute"``).

        Raises
        ------
        clusterml.EngineError
            An engine died: the engine set is marked broken.
        clusterml.ClusterTimeoutError, KeyboardInterrupt
            Via :meth:`interrupt`.
        """
        c = self._c
        timeout = c.timeout if timeout is None else float(timeout)
        deadline = time.monotonic() + timeout
        try:
            while not ar.ready():
                ar.wait(POLL)
                if ar.ready():
                    break
                self.check_controller(what)
                lost = self.dead_ranks()
                if lost:
                    self._engines_lost(ar, lost, what)
                if time.monotonic() > deadline:
                    self.interrupt(ar, what, f"timed out after {timeout:g} s")
        except KeyboardInterrupt:
            self.interrupt(ar, what, "interrupted (Ctrl-C)", keyboard=True)

    def _engines_lost(self, ar, lost: list, what: str):
        """Raise the error for engines gone during ``what`` (the controller's loss, if it is that)."""
        self.check_controller(what, probe=False)  # engines end when their controller is gone
        # MPICH ends the whole world when one rank dies; the rank that died first may still be
        # tearing down (not yet a zombie) when the others are reaped: look again a moment later
        time.sleep(LOST_SETTLE)
        lost = sorted(set(lost) | set(self.dead_ranks()))
        stopped = [r for r in self.stopped_ranks() if r in lost]
        died = [r for r in lost if r not in stopped]
        parts = ([f"engine(s) of rank(s) {', '.join(map(str, died))} died"] if died else []) + \
            ([f"engine(s) of rank(s) {', '.join(map(str, stopped))} stopped answering (the controller "
              f"dropped them)"] if stopped else [])
        self.mark_broken(f"{' and '.join(parts)} during {what}")
        self.abandon(ar)
        raise EngineError(f"{self.broken}; running: {self.where(ar)}.{self.frozen_note(stopped)} MPI "
                          f"cannot lose a rank: call cluster.restart() for a new engine set.",
                          {r: ("EngineError", "engine stopped" if r in stopped else "engine died", "")
                           for r in lost})

    def interrupt(self, ar, what: str, why: str, keyboard: bool = False):
        """SIGINT the engines still running ``ar``; raise what the user must know.

        When every engine answers, clusterml's communicator is replaced (no
        message of the interrupted collective can match a later one) and the
        engines stay usable; otherwise the engine set is marked broken.

        Raises
        ------
        clusterml.ClusterTimeoutError
            Always, unless ``keyboard``: then KeyboardInterrupt.
        """
        c = self._c
        pending = self.pending_ranks(ar)
        where = self.where(ar)
        try:
            c._client.send_signal(signal.SIGINT, targets=pending, block=False)
        except Exception as exc:
            log.debug("send_signal failed: %r", exc)
        # a stopped (SIGSTOP) engine cannot answer: no grace for it
        frozen = bool(pending) and set(pending) <= set(self.stopped_ranks())
        grace = time.monotonic() + (0.0 if frozen else INTERRUPT_GRACE)
        while not ar.ready() and time.monotonic() < grace:
            ar.wait(POLL)
        recovered = ar.ready() and self._reset_comm()
        if recovered:
            msg = f"{what} {why}; it was {where}. The engines were interrupted and are usable again."
        else:
            stuck = self.pending_ranks(ar) or pending
            stopped = [r for r in self.stopped_ranks() if r in stuck]
            blocked = [r for r in stuck if r not in stopped]
            self.mark_broken(f"{what} {why}; it was {where}. " + (
                f"Rank(s) {', '.join(map(str, blocked))} did not answer the interrupt (a rank blocked "
                f"inside an MPI collective cannot be interrupted). " if blocked else "")
                + self.frozen_note(stuck).strip())
            self.abandon(ar)
            msg = self.broken.rstrip(". ") + ". Call cluster.restart() for a new engine set."
        if keyboard:
            raise KeyboardInterrupt(msg)
        raise ClusterTimeoutError(msg)

    def _reset_comm(self) -> bool:
        try:
            reset = self._c._view.apply_async(Entry("reset_comm"))
            reset.wait(INTERRUPT_GRACE)
            return reset.ready() and reset.successful()
        except Exception:
            return False
