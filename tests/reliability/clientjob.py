"""A second (or third) client of a running cluster, as another notebook would be.

Run as ``python clientjob.py MODE CLUSTER_ID SEED ROUNDS`` with ``IPYTHONDIR`` set to the
cluster's; prints one JSON line.  Modes:

* ``data``: attach with ``Cluster.connect``, keep one scattered block for the whole run,
  and ROUNDS times scatter new rows, compute their covariance, compare with NumPy and free
  them; finally compute on the kept block again (another client's frees must not drop it).
* ``wait``: attach and wait in one long call; print the error it ends with and how long
  after the start line (``ready``) it came.
"""

import json
import sys
import time

import numpy as np

import clusterml as cml


def _data(cluster, seed: int, rounds: int) -> dict:
    rng = np.random.default_rng(seed)
    kept = rng.normal(size=(31, 4)) * (seed + 1) + seed
    ref = cluster.scatter(kept)
    ok, names = 0, {ref.name}
    for _ in range(rounds):
        X = rng.normal(size=(int(rng.integers(5, 40)), 4)) * (seed + 1) + 10 * seed
        r = cluster.scatter(X)
        names.add(r.name)
        res = cluster.covariance().compute(r)
        ok += bool(np.allclose(res.covariance, np.cov(X.T)) and np.allclose(res.mean, X.mean(0)))
        cluster.free(r)
    res = cluster.low_order_moments().compute(ref)
    kept_ok = bool(np.allclose(res.mean, kept.mean(0)) and np.allclose(res.variance, kept.var(0, ddof=1)))
    return {"rounds": rounds, "correct": ok, "kept_ok": kept_ok, "names": sorted(names)[:3]}


def _wait(cluster) -> dict:
    def sleep(seconds):
        import time

        time.sleep(seconds)
        return seconds

    print("ready", flush=True)
    t0 = time.monotonic()
    try:
        cluster.apply(sleep, 120, timeout=100)
        out = {"error": None, "seconds": time.monotonic() - t0}
    except Exception as exc:
        out = {"error": type(exc).__name__, "message": str(exc), "seconds": time.monotonic() - t0}
    if out["error"]:
        try:  # an attached client cannot replace the controller: restart() must say so, not hang
            cluster.restart()
            out["restart"] = None
        except Exception as exc:
            out["restart"] = type(exc).__name__
    return out


def main():
    mode, cluster_id, seed, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    cluster = cml.Cluster.connect(cluster_id=cluster_id, timeout=120)
    try:
        out = _data(cluster, seed, rounds) if mode == "data" else _wait(cluster)
    finally:
        cluster.stop()  # attached: disconnects only
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
