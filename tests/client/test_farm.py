"""Task farming on a real local cluster of 2 MPI engines: cluster.map (DEAP's toolbox.map) and
cluster.joblib() (scikit-learn's n_jobs), and the MPI world still works after every farm."""

import math
import os
import signal
import sys
import time

import numpy as np
import psutil
import pytest
from clienthelp import ROOT, engine_env

import clusterml as cml
from clusterml.client import TaskError

pytestmark = pytest.mark.timeout(300)

EXAMPLES = os.path.join(ROOT, "examples")
if EXAMPLES not in sys.path:
    sys.path.insert(0, EXAMPLES)

X = np.random.default_rng(5).normal(size=(80, 3)) * [1.0, 10.0, 0.1]


def farm_env() -> dict:
    env = engine_env()
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], EXAMPLES])
    return env


@pytest.fixture(scope="module")
def cluster(ipython_dir):
    c = cml.Cluster(n=2, engine_env=farm_env(), timeout=120)
    try:
        yield c
    finally:
        c.stop()


def spmd_ok(cluster):
    """The MPI world is intact: a collective algorithm on every engine gives NumPy's answer."""
    res = cluster.covariance().compute(X)
    np.testing.assert_allclose(res.covariance, np.cov(X.T), rtol=1e-12)
    mom = cluster.low_order_moments().compute(X)
    np.testing.assert_allclose(np.ravel(mom.mean), X.mean(axis=0), rtol=1e-12)
    assert [e["rank"] for e in cluster.engines] == [0, 1]


# functions shipped by reference: this module is importable on the engines (tests/client is
# on their PYTHONPATH)
def poly(x, y=0):
    return 3 * x * x - 2 * x + y


def fail_at(x, bad=13):
    if x == bad:
        raise ValueError(f"no good: x={x}")
    return x


def which_rank(_):
    return cml.my_procid()


# ---------------------------------------------------------------------------
# cluster.map


@pytest.mark.parametrize("chunksize", [None, 1, 4, 1000])
def test_map_equals_builtin_map(cluster, chunksize):
    xs = list(range(37))
    assert cluster.map(poly, xs, chunksize=chunksize) == list(map(poly, xs))
    # several iterables, stopping at the shortest, generators accepted
    ys = (10 * i for i in range(30))
    assert cluster.map(poly, xs, ys, chunksize=chunksize) == list(map(poly, range(30), range(0, 300, 10)))
    got = cluster.map(poly, xs, ordered=False, chunksize=chunksize)
    assert sorted(got) == sorted(map(poly, xs)) and len(got) == len(xs)


def test_map_uses_every_engine_and_edge_cases(cluster):
    ranks = cluster.map(which_rank, range(8), chunksize=1)
    assert set(ranks) == {0, 1}, f"tasks ran on ranks {ranks}: not load-balanced over both engines"
    assert cluster.map(poly, []) == []
    assert cluster.map(abs, [-1.5, 2, -3]) == [1.5, 2, 3]  # builtins go by reference
    with pytest.raises(cml.ParameterError, match="chunksize=0"):
        cluster.map(poly, [1], chunksize=0)
    with pytest.raises(cml.ParameterError, match="callable"):
        cluster.map(42, [1])
    with pytest.raises(cml.ParameterError, match="at least one iterable"):
        cluster.map(poly)


def test_map_ships_main_functions_closures_and_lambdas(cluster):
    # a function defined in __main__ (a notebook cell, a script) travels by value with its globals
    ns = {"__name__": "__main__"}
    exec("import math\nSCALE = 7\ndef g(x):\n    return math.floor(x) * SCALE\n", ns)
    g = ns["g"]
    assert g.__module__ == "__main__"
    assert cluster.map(g, [1.5, 2.5, 3.5]) == [7, 14, 21]
    offset = 100
    assert cluster.map(lambda a, b: a * b + offset, [1, 2], [3, 4]) == [103, 108]


def test_task_error_names_index_and_engines_stay_usable(cluster):
    with pytest.raises(TaskError) as info:
        cluster.map(fail_at, range(40), chunksize=4)
    err = info.value
    msg = str(err)
    assert err.index == 13
    assert "task 13 of 40" in msg and "ValueError: no good: x=13" in msg
    assert "fail_at" in msg, "the remote traceback should show the task's own frame"
    assert isinstance(err.exception, ValueError) and err.__cause__ is err.exception
    assert isinstance(err, cml.ComputeError) and isinstance(err, cml.DistributedError)
    assert len(err.causes) == 1

    # unordered: still the failing task's index
    with pytest.raises(TaskError, match=r"task 5 of 9"):
        cluster.map(fail_at, range(9), [5] * 9, ordered=False, chunksize=2)
    # the engines are fine: farm and SPMD both work right after
    assert cluster.map(poly, range(5)) == list(map(poly, range(5)))
    spmd_ok(cluster)


def test_task_exiting_with_sys_exit_does_not_kill_its_engine(cluster):
    pids = [e["pid"] for e in cluster.engines]
    with pytest.raises(TaskError, match=r"task 2 of 4 .*SystemExit") as info:
        cluster.map(lambda i: sys.exit(3) if i == 2 else i, range(4), chunksize=1)
    assert info.value.index == 2
    assert [e["pid"] for e in cluster.engines] == pids
    assert all(psutil.pid_exists(p) for p in pids)
    spmd_ok(cluster)


def test_map_timeout_interrupts_tasks_and_engines_stay_usable(cluster):
    t0 = time.monotonic()
    with pytest.raises(cml.ClusterTimeoutError, match=r"timed out after 2 s with 0 of 6 tasks done") as info:
        cluster.map(time.sleep, [60] * 6, chunksize=1, timeout=2)
    assert time.monotonic() - t0 < 30
    assert "usable again" in str(info.value)
    assert cluster.status()["broken"] is None
    assert cluster.map(poly, [1, 2]) == [1, 8]
    spmd_ok(cluster)


def test_map_progress_is_plain_lines_when_not_a_terminal(cluster, capsys, monkeypatch):
    from clusterml.client import progress

    monkeypatch.setattr(progress, "_LINE_EVERY", 0.3)
    assert cluster.map(time.sleep, [0.2] * 12, chunksize=1, progress=True) == [None] * 12
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("map(sleep)")]
    assert "\r" not in "".join(lines)
    assert 2 <= len(lines) <= 12, lines  # rate-limited, not one per task
    assert "12/12" in lines[-1] and "100%" in lines[-1], lines


def test_health_is_public_and_what_the_farm_sees(cluster):
    h = cluster.health
    assert h.lost_ranks() == [] and h.dead_ranks() == [] and h.broken is None
    assert h.launcher_exit() is None and "MPIEngineSetLauncher" in h.launcher_state()
    ar = cluster.view.apply_async(time.sleep, 0.1)
    h.wait(ar, 30, "a sleep")
    assert ar.ready() and h.pending_ranks(ar) == []
    assert "finished on rank(s) 0, 1" in h.where(ar)


# ---------------------------------------------------------------------------
# DEAP


def test_deap_cmaes_through_cluster_map_matches_serial(cluster):
    import deap_cmaes

    kw = dict(dim=5, ngen=30, lambda_=24, seed=11)
    serial = deap_cmaes.run_cmaes(map, **kw)
    farmed = deap_cmaes.run_cmaes(cluster.map, **kw)
    # the candidates are drawn on the client and evaluated deterministically: same run
    assert farmed["min"] == serial["min"]
    assert farmed["best"] == serial["best"] and farmed["evaluations"] == 30 * 24
    # and the run improves (Rastrigin at the start [5]*5 is 125)
    assert farmed["best_fitness"] < 0.2 * farmed["min"][0]


def test_deap_creator_classes_reach_the_engines(cluster):
    """Individuals of classes made with creator.create in the notebook only: the engines
    rebuild the classes (DEAP >= 1.4 pickles them as a recipe); results come back as them."""
    from deap import base, creator

    if not hasattr(creator, "FarmFitness"):
        creator.create("FarmFitness", base.Fitness, weights=(1.0, -1.0))
        creator.create("FarmIndividual", list, fitness=creator.FarmFitness, tag="farm")

    def mutate(ind):
        child = type(ind)(2 * v for v in ind)
        child.fitness.values = (sum(child), len(child))
        return child, type(ind).__name__, ind.fitness.weights, ind.tag

    pop = [creator.FarmIndividual([float(i), 1.0]) for i in range(5)]
    out = cluster.map(mutate, pop)
    for i, (child, name, weights, tag) in enumerate(out):
        assert (name, weights, tag) == ("FarmIndividual", (1.0, -1.0), "farm")
        assert type(child).__name__ == "FarmIndividual" and list(child) == [2.0 * i, 2.0]
        assert child.fitness.values == (2.0 * i + 2.0, 2)


# ---------------------------------------------------------------------------
# joblib / scikit-learn


def test_gridsearch_through_joblib_matches_n_jobs_1(cluster):
    import gridsearch_svc

    X_train, _, y_train, _ = gridsearch_svc.load_data(samples=500, seed=0)
    grid = {"C": [0.1, 1.0, 10.0], "gamma": [1e-3, 1e-2, 1e-1]}
    serial = gridsearch_svc.grid_search(X_train, y_train, grid, cv=3, n_jobs=1)
    where = cluster.map(lambda _: os.getpid(), range(2), chunksize=1)  # engine pids
    with cluster.joblib():
        farmed = gridsearch_svc.grid_search(X_train, y_train, grid, cv=3, n_jobs=-1)
        import joblib

        pids = set(joblib.Parallel()(joblib.delayed(os.getpid)() for _ in range(6)))
    assert farmed.best_params_ == serial.best_params_
    np.testing.assert_allclose(farmed.cv_results_["mean_test_score"], serial.cv_results_["mean_test_score"])
    assert os.getpid() not in pids and pids <= {e["pid"] for e in cluster.engines}, \
        f"joblib tasks ran in {pids}, engines are {where}"
    spmd_ok(cluster)


def test_joblib_parallel_results_and_errors(cluster):
    import joblib

    with cluster.joblib():
        assert joblib.Parallel()(joblib.delayed(poly)(i, y=1) for i in range(20)) == \
            [poly(i, y=1) for i in range(20)]
        # explicit n_jobs and the registered name reach the same engines
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(math.sqrt)(i) for i in (4, 9)) == [2.0, 3.0]
        with pytest.raises(ValueError, match="no good: x=13") as info:
            joblib.Parallel()(joblib.delayed(fail_at)(i) for i in range(30))
        notes = "".join(getattr(info.value, "__notes__", []))
        assert "remote traceback" in notes and "fail_at" in notes
    with joblib.parallel_config(backend="clusterml"):
        assert joblib.Parallel(n_jobs=-1)(joblib.delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
    spmd_ok(cluster)


def test_backend_worker_count(cluster, monkeypatch):
    from clusterml.client.joblib_backend import ClusterBackend

    backend = ClusterBackend(cluster)
    assert backend.effective_n_jobs(-1) == 2 and backend.effective_n_jobs(None) == 2
    assert backend.effective_n_jobs(5) == 5 and backend.effective_n_jobs(1) == 1
    # one engine: joblib would run an n_jobs == 1 backend in the notebook, so it counts as 2
    # (one batch running, one queued) and the work still goes to the engine
    monkeypatch.setattr(backend, "_get_view", lambda: type("V", (), {"targets": [0]})())
    assert backend.effective_n_jobs(-1) == 2 and backend.effective_n_jobs(1) == 1


# ---------------------------------------------------------------------------
# a task that kills its engine takes the MPI world down; restart() recovers (own cluster)


def _processes_of(c) -> list:
    procs = []
    for pid in [e["pid"] for e in c.engines] + [c._ipp.controller.pid] + \
            [es.pid for es in c._ipp.engines.values()]:
        try:
            procs.append(psutil.Process(pid))
        except psutil.Error:
            pass
    return procs


def _gone(procs, timeout=20.0) -> list:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_task_killing_its_engine_is_reported_and_restart_recovers(ipython_dir, capsys):
    t0 = time.monotonic()
    with cml.Cluster(n=2, engine_env=farm_env(), timeout=120) as c:
        started = time.monotonic() - t0
        first = _processes_of(c)

        def die(i):
            if i == 3:
                os._exit(1)
            time.sleep(0.2)
            return i

        t1 = time.monotonic()
        with pytest.raises(cml.EngineError) as info:
            c.map(die, range(8), chunksize=1)
        detect_s = time.monotonic() - t1
        msg = str(info.value)
        assert "died during map(die)" in msg and "restart()" in msg and "MPI cannot lose a rank" in msg
        with pytest.raises(cml.EngineError, match="restart"):
            c.map(abs, [1])
        with pytest.raises(cml.EngineError, match="restart"):
            c.covariance().compute(X)
        t1 = time.monotonic()
        c.restart()
        restart_s = time.monotonic() - t1
        assert _gone(first) == []
        assert c.map(poly, range(6)) == list(map(poly, range(6)))
        spmd_ok(c)
        second = _processes_of(c)
    assert _gone(second) == []
    with capsys.disabled():
        print(f"\n[farm] start {started:.1f} s; os._exit in a task detected in {detect_s:.2f} s; "
              f"restart {restart_s:.1f} s; total {time.monotonic() - t0:.1f} s")


def test_killed_engine_during_joblib_is_reported(ipython_dir):
    # SIGKILL from outside (an OOM kill) while joblib waits: EngineError, not a hang
    import joblib

    with cml.Cluster(n=2, engine_env=farm_env(), timeout=120) as c:
        victim = c.engines[1]["pid"]

        def slow(i):
            time.sleep(0.5)
            if i == 2:
                os.kill(victim, signal.SIGKILL)
            return i

        with pytest.raises(cml.EngineError, match="restart"), c.joblib():
            joblib.Parallel(batch_size=1)(joblib.delayed(slow)(i) for i in range(20))
        procs = _processes_of(c)
    assert _gone(procs) == []


# ---------------------------------------------------------------------------
# the examples and the benchmark run (their numbers are not checked here)


def test_examples_write_their_plots_in_process(tmp_path):
    import deap_cmaes
    import gridsearch_svc

    png = tmp_path / "cmaes.png"
    res = deap_cmaes.main(["--engines", "0", "--dim", "3", "--ngen", "5", "--plot", str(png)])
    assert len(res["min"]) == 5 and png.stat().st_size > 1000
    png = tmp_path / "grid.png"
    search = gridsearch_svc.main(["--engines", "0", "--samples", "300", "--grid", "3", "--cv", "2",
                                  "--plot", str(png)])
    assert len(search.cv_results_["mean_test_score"]) == 9 and png.stat().st_size > 1000


def test_benchmark_script_runs(ipython_dir):
    import subprocess

    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "farm.py"), "--quick",
                          "--engines", "2"], capture_output=True, text=True, timeout=280,
                         env=dict(os.environ, IPYTHONDIR=ipython_dir), cwd=str(ROOT))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("gridsearch") for line in lines), out.stdout
    assert sum(line.startswith("cmaes") for line in lines) == 2, out.stdout
