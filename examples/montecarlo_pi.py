"""Monte-Carlo estimate of pi with ``cluster.map_reduce``, shared settings and futures.

Run as a batch script with its own engines (the ``python -m scoop -n N`` pattern)::

    clusterml run -n 2 examples/montecarlo_pi.py --batches 64 --samples 200000

or in this process without engines (``python examples/montecarlo_pi.py --serial``).
Each task draws ``--samples`` points from its own seeded generator and counts
those inside the unit circle; the counts are summed on the engines chunk by
chunk (``map_reduce``), so the estimate is the same with any number of engines.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import operator

import numpy as np


def count_inside(seed: int) -> int:
    """Points of one batch inside the quarter circle (``SAMPLES`` is shared with every engine)."""
    rng = np.random.default_rng(seed)
    xy = rng.random((SAMPLES, 2))
    return int(np.count_nonzero((xy * xy).sum(axis=1) <= 1.0))


def main(argv=None) -> float:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batches", type=int, default=32)
    p.add_argument("--samples", type=int, default=100_000)
    p.add_argument("--serial", action="store_true", help="no engines: the built-in map")
    args = p.parse_args(argv)
    global SAMPLES
    SAMPLES = args.samples
    seeds = range(args.batches)
    if args.serial:
        inside = sum(map(count_inside, seeds))
    else:
        import clusterml as cml

        cluster = cml.Cluster.current()  # the cluster of `clusterml run`
        del SAMPLES  # the engines get it once, not with every task
        cluster.share(SAMPLES=args.samples)
        inside = cluster.map_reduce(count_inside, operator.add, seeds)
        # the same with futures, as concurrent.futures users write it
        futures = [cluster.submit(count_inside, s) for s in seeds]
        assert sum(f.result() for f in concurrent.futures.as_completed(futures)) == inside
        print(f"{len(cluster)} engines")
    pi = 4.0 * inside / (args.batches * args.samples)
    print(f"pi ~ {pi:.6f} from {args.batches * args.samples} points")
    return pi


if __name__ == "__main__":
    main()
