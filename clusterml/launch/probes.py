"""What every doctor check shares: the :class:`Check` record, the probe run inside jobs, helpers.

Kept apart from :mod:`.doctor` (the local checks and the report) and :mod:`.doctor_slurm` (the
Slurm job and reachability checks) so that neither imports the other.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["STATUSES", "Check", "PROBE"]

STATUSES = ("ok", "warning", "problem", "skipped")


@dataclass
class Check:
    """One check's verdict."""

    name: str
    status: str
    summary: str
    details: str = ""
    fix: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


#: Run by every task of a test world: writes one JSON file per process
#: (stdout of several ranks may interleave). argv: folder [host port [addr,addr...]]:
#: the controller's address as the engines get it (resolved here, on the node) and
#: this host's other addresses, each tried with a TCP connect.
PROBE = r"""
import json, os, socket, sys
res = {"host": socket.gethostname(), "pid": os.getpid(), "procid": os.environ.get("SLURM_PROCID")}
try:
    from mpi4py import MPI
    w = MPI.COMM_WORLD
    res.update(rank=w.Get_rank(), size=w.Get_size(),
               library=MPI.Get_library_version().strip().splitlines()[0].strip())
except Exception as e:
    res["error"] = f"{type(e).__name__}: {e}"
def reach(host, port, timeout):
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return "ok"
    except OSError as e:
        return f"{type(e).__name__}: {e}"
if len(sys.argv) > 3 and sys.argv[2] != "-":
    try:
        res["resolved"] = socket.gethostbyname(sys.argv[2])
    except OSError as e:
        res["resolved"] = f"{sys.argv[2]} (unresolved: {e})"
    res["reach"] = reach(sys.argv[2], sys.argv[3], 10)
    alts = sys.argv[4].split(",") if len(sys.argv) > 4 and sys.argv[4] else []
    res["alts"] = {a: reach(a, sys.argv[3], 3) for a in alts}
with open(os.path.join(sys.argv[1], f"{res['host']}-{res['pid']}.json"), "w") as f:
    json.dump(res, f)
"""


def _run(argv, timeout, env=None, cwd=None):
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           stdin=subprocess.DEVNULL, timeout=timeout, env=env, cwd=cwd)
        return p.returncode, p.stdout
    except FileNotFoundError as e:
        return 127, str(e)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        return None, out + f"\n(no answer within {timeout} s)"
    except OSError as e:
        return 126, str(e)


def _first_lines(text: str, n: int = 3) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[:n] if line.strip())


# ----------------------------------------------------------------------------- MPI checks
def _read_probes(folder: str) -> list[dict]:
    rows = []
    for p in sorted(Path(folder).glob("*.json")):
        try:
            rows.append(json.loads(p.read_text()))
        except ValueError:
            pass
    return rows


def _world_verdict(rows: list[dict], n: int) -> tuple[str, str]:
    """("one", ...) | ("singletons", ...) | ("broken", ...)."""
    errors = [r["error"] for r in rows if "error" in r]
    if errors:
        return "broken", f"mpi4py failed in the job: {errors[0]}"
    sizes = sorted(r.get("size") for r in rows)
    ranks = sorted(r.get("rank") for r in rows)
    if len(rows) == n and sizes == [n] * n and ranks == list(range(n)):
        return "one", f"ranks {ranks}, size {n} on {sorted({r['host'] for r in rows})}"
    if len(rows) == n and sizes == [1] * n:
        return "singletons", f"{n} processes, each alone in a world of size 1 (ranks {ranks})"
    return "broken", f"{len(rows)} of {n} processes reported: {rows}"
