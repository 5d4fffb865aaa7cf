"""Run under SCOOP (``python -m scoop -n N benchmarks/_scoop_worker.py ...``) by ``benchmarks/farm.py``.

Times the DEAP CMA-ES workload of ``examples/deap_cmaes.py`` with ``scoop.futures.map``
as DEAP's map (the UL HPC tutorial's pattern): one warm-up run, then the best of
``--repeat``; prints one JSON line ``{"seconds": ..., "min": ...}``.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))

import deap_cmaes  # noqa: E402
from scoop import futures  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--ngen", type=int, default=50)
    p.add_argument("--cost-ms", type=float, default=0.0)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    kw = dict(dim=a.dim, ngen=a.ngen, seed=64, cost_ms=a.cost_ms)
    deap_cmaes.run_cmaes(futures.map, **kw)  # warm-up
    best, out = float("inf"), None
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        out = deap_cmaes.run_cmaes(futures.map, **kw)
        best = min(best, time.perf_counter() - t0)
    print("SCOOP_RESULT " + json.dumps({"seconds": best, "min": out["min"]}), flush=True)


if __name__ == "__main__":
    main()
