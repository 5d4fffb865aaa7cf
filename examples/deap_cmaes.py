"""CMA-ES on the Rastrigin function with DEAP, the fitness evaluations farmed out with ``cluster.map``.

The UL HPC School's scoop + DEAP exercise (seed 004), on a clusterml cluster
instead of ``python -m scoop`` under a hand-written launcher: the only
parallel line is ``toolbox.register("map", cluster.map)``.

CMA-ES: N. Hansen and A. Ostermeier, "Completely derandomized
self-adaptation in evolution strategies", Evolutionary Computation 9(2),
2001 (DEAP's ``deap.cma.Strategy``).  Rastrigin: ``f(x) = 10 n + sum(x_i^2 -
10 cos(2 pi x_i))``, minimum 0 at the origin, many local minima.

Usage::

    python examples/deap_cmaes.py --engines 2 --plot cmaes.png
    python examples/deap_cmaes.py --engines 0          # serial, the built-in map
    python examples/deap_cmaes.py --engines 2 --cost-ms 5   # pretend each evaluation costs 5 ms of CPU

The candidates are generated on the client (CMA-ES's random draws are made
there, from ``--seed``) and only their evaluation runs on the engines, so a
seeded run gives the same generations with any number of engines.  DEAP's
``creator`` classes are created here only: since DEAP 1.4 an individual
pickles with the recipe of its class, so the engines need no set-up.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import sys
import time

import numpy as np
from deap import algorithms, base, benchmarks, cma, creator, tools

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


if not hasattr(creator, "FitnessMin"):
    creator.create("FitnessMin", base.Fitness, weights=(-1.0,))
if not hasattr(creator, "Individual"):
    creator.create("Individual", list, fitness=creator.FitnessMin)


def _burn(ms: float) -> None:
    """Spend ``ms`` milliseconds of this thread's CPU time (a stand-in for an expensive simulation)."""
    end = time.thread_time() + ms / 1000.0
    x = 0.0
    while time.thread_time() < end:
        for i in range(200):
            x += i * 1e-9


def evaluate(individual, cost_ms: float = 0.0) -> tuple:
    """Rastrigin fitness of one individual, as DEAP expects it: a plain tuple.

    Parameters
    ----------
    individual : sequence of float, length n
    cost_ms : float
        Extra CPU time to spend, so the farm has something worth distributing.
    """
    if cost_ms > 0:
        _burn(cost_ms)
    return benchmarks.rastrigin(individual)


def run_cmaes(map_fn=map, dim: int = 10, ngen: int = 100, lambda_: int | None = None,
              sigma: float = 5.0, seed: int = 64, cost_ms: float = 0.0, verbose: bool = False) -> dict:
    """One seeded CMA-ES run on Rastrigin; the population is evaluated with ``map_fn``.

    Parameters
    ----------
    map_fn : callable
        ``map`` (serial) or ``cluster.map`` (farmed over the engines).
    dim : int
        Dimension n of the problem.
    ngen : int
        Generations.
    lambda_ : int, optional
        Offspring per generation (default ``20 * dim``, as in the seed).
    sigma : float
        Initial step size; the search starts at ``[5.0] * dim``.
    seed : int
        Seeds Python's and NumPy's generators (CMA-ES samples with ``numpy.random``).

    Returns
    -------
    dict
        ``min``, ``avg`` (per generation, lists of length ``ngen``), ``best``
        (list of float), ``best_fitness``, ``evaluations``, ``seconds``.
    """
    random.seed(seed)
    np.random.seed(seed)
    strategy = cma.Strategy(centroid=[5.0] * dim, sigma=sigma, lambda_=lambda_ or 20 * dim)
    toolbox = base.Toolbox()
    toolbox.register("evaluate", functools.partial(evaluate, cost_ms=cost_ms))
    toolbox.register("map", map_fn)
    toolbox.register("generate", strategy.generate, creator.Individual)
    toolbox.register("update", strategy.update)
    hof = tools.HallOfFame(1)
    stats = tools.Statistics(lambda ind: ind.fitness.values)
    stats.register("avg", np.mean)
    stats.register("min", np.min)
    t0 = time.perf_counter()
    _, logbook = algorithms.eaGenerateUpdate(toolbox, ngen=ngen, stats=stats, halloffame=hof,
                                             verbose=verbose)
    seconds = time.perf_counter() - t0
    return {"min": [float(v) for v in logbook.select("min")],
            "avg": [float(v) for v in logbook.select("avg")],
            "best": [float(v) for v in hof[0]], "best_fitness": float(hof[0].fitness.values[0]),
            "evaluations": int(sum(logbook.select("nevals"))), "seconds": seconds}


def plot_convergence(result: dict, path: str, title: str = "") -> str:
    """Best and mean fitness per generation (log scale), saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    gens = np.arange(1, len(result["min"]) + 1)
    ax.semilogy(gens, np.maximum(result["min"], 1e-12), label="best of generation")
    ax.semilogy(gens, np.maximum(result["avg"], 1e-12), label="population mean", alpha=0.7)
    ax.set_xlabel("generation")
    ax.set_ylabel("Rastrigin f(x)")
    ax.set_title(title or f"CMA-ES on Rastrigin, n={len(result['best'])}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def engine_env() -> dict:
    """What the engines need: this checkout of clusterml and this file's directory importable,
    one BLAS thread each (the engines are the parallelism)."""
    return {"PYTHONPATH": os.pathsep.join([ROOT, HERE]), "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", type=int, default=2, help="MPI engines (0: serial, built-in map)")
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--ngen", type=int, default=100)
    p.add_argument("--lambda", dest="lambda_", type=int, default=None, help="offspring (default 20*dim)")
    p.add_argument("--seed", type=int, default=64)
    p.add_argument("--cost-ms", type=float, default=0.0, help="extra CPU ms per evaluation")
    p.add_argument("--plot", default="deap_cmaes.png", help="where to write the convergence plot")
    p.add_argument("--profile", default=None, help="clusterml / IPython profile (default: local MPI)")
    args = p.parse_args(argv)

    kw = dict(dim=args.dim, ngen=args.ngen, lambda_=args.lambda_, seed=args.seed, cost_ms=args.cost_ms)
    if args.engines == 0:
        res = run_cmaes(map, **kw)
        where = "serial"
    else:
        sys.path.insert(0, ROOT)  # this checkout, also when clusterml is not installed
        import clusterml as cml

        with cml.Cluster(n=args.engines, profile=args.profile, engine_env=engine_env()) as cluster:
            res = run_cmaes(cluster.map, **kw)
        where = f"{args.engines} engines"
    print(f"CMA-ES on Rastrigin n={args.dim}, {args.ngen} generations, {res['evaluations']} evaluations "
          f"({where}): best f = {res['best_fitness']:.3g} in {res['seconds']:.2f} s")
    if args.plot:
        try:
            plot_convergence(res, args.plot, f"CMA-ES on Rastrigin, n={args.dim} ({where})")
            print(f"convergence plot: {args.plot}")
        except ImportError:
            print("no convergence plot: matplotlib is not installed (pip install 'clusterml[farm]')")
    return res


if __name__ == "__main__":
    main()
