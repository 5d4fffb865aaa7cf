"""The fault matrix under mpiexec: every algorithm x {unreadable input, invalid value, an
exception raised inside the computation} x {rank 0, the last rank, every rank}.

Each case must end with the same DistributedError subclass on every rank, naming exactly the
failing ranks, within 30 s (the contract; a hang is caught by the suite's hard timeout), and
the next call on the same communicator must give the same bits as a call before any fault.
(SIGKILLed ranks are tested in tests/reliability/test_kill_mpiexec.py: a killed rank ends the
whole mpiexec job, so it cannot share a world with other cases.)

Every rank holds rows here, so a fault targeted at a rank always fires there.
"""

import hashlib
import os
import pickle
import shutil
import sys
import tempfile
import time

import numpy as np
import pytest
from faultcases import N_CLASSES, block, build, cases, landed_algorithms
from mpihelpers import _canonical, mpi_assert, rank, size, world

import clusterml as cml
from clusterml.spmd import REGISTRY

ERROR_WITHIN = 30.0  # seconds: the contract for every error

TABLES = build(size())
CASES = cases(TABLES)
CENTROIDS = CASES["kmeans"][3]["inputCentroids"]


def mine(key):
    return block(TABLES[key], rank()).copy()


ALGORITHMS = landed_algorithms()
FAULTS = ["unreadable input", "invalid value", "exception"]
TARGETS = ["rank 0", "last rank", "every rank"]

TALLY = {"tried": 0, "passed": 0, "hangs": 0, "slowest": 0.0}


def target_ranks(target):
    return {"rank 0": [0], "last rank": [size() - 1], "every rank": list(range(size()))}[target]


def digest(obj):
    return hashlib.sha256(pickle.dumps(_canonical_deep(obj), protocol=4)).hexdigest()


def _canonical_deep(obj):
    if isinstance(obj, cml.Result):
        return {k: _canonical_deep(v) for k, v in obj.to_dict().items()}
    if isinstance(obj, dict):
        return {k: _canonical_deep(v) for k, v in obj.items()}
    return _canonical(obj)


@pytest.fixture(scope="module")
def files():
    """Per-rank .npy files: good ones, and for each target set a copy whose targeted ranks'
    data file is not a readable .npy (garbage bytes)."""
    d = tempfile.mkdtemp(prefix="cml-faults-") if rank() == 0 else None
    d = world().bcast(d, root=0)
    if rank() == 0:
        for tname, A in TABLES.items():
            for r in range(size()):
                part = block(A, r)
                np.save(os.path.join(d, f"{tname}-good-{r}.npy"), part)
                for target in TARGETS:
                    path = os.path.join(d, f"{tname}-{target.replace(' ', '')}-{r}.npy")
                    if r in target_ranks(target):
                        with open(path, "wb") as fh:
                            fh.write(b"\x93NUMPY garbage, not an array" * 3)
                    else:
                        np.save(path, part)
    world().Barrier()
    yield d
    world().Barrier()
    if rank() == 0:
        shutil.rmtree(d, ignore_errors=True)


def good_inputs(name, files):
    _, _, tables, extras, _ = CASES[name]
    out = {k: mine(key) for k, key in tables.items()}
    out.update(extras)
    return out


def path_of(key, files, variant):
    return os.path.join(files, f"{key}-{variant}-{{}}.npy")


def bad_inputs(name, fault, target, files):
    """Inputs for one case and the error expected on every rank (class, text in the message)."""
    _, _, tables, _extras, _ = CASES[name]
    hit = rank() in target_ranks(target)
    inputs = good_inputs(name, files)
    if fault == "unreadable input":
        # the data table of the targeted ranks is not a readable file; the others read fine
        inputs["data"] = path_of(tables["data"], files, target.replace(" ", ""))
        for k, key in tables.items():
            if k != "data":
                inputs[k] = path_of(key, files, "good")
        return inputs, cml.InputError, "cannot read"
    if fault == "invalid value":
        if name == "multinomial_naive_bayes_training":
            if hit:
                inputs["labels"][2, 0] = N_CLASSES + 4
            return inputs, cml.InputError, f"outside [0, {N_CLASSES})"
        if name == "multinomial_naive_bayes_prediction":
            if hit:
                inputs["data"][3, 1] = -2.0
            return inputs, cml.InputError, "non-negative counts"
        if name == "kmeans":
            if hit:
                C = CENTROIDS.copy()
                C[1, 2] = np.nan
                inputs["inputCentroids"] = C
            return inputs, cml.InputError, "must be finite"
        if hit:
            inputs["data"][5, 1] = np.nan if rank() % 2 == 0 else np.inf
        return inputs, cml.InputError, "must be finite"
    return inputs, cml.ComputeError, "fault injected"


@pytest.fixture(scope="module")
def healthy(files):
    """The result of each algorithm before any fault (what every later call must equal)."""
    out = {}
    for name in ALGORITHMS:
        args, kwargs, _, _, _ = CASES[name]
        out[name] = digest(REGISTRY[name](*args, **kwargs, distributed=True)
                           .compute(**good_inputs(name, files)))
    return out


def test_every_algorithm_has_a_fault_case():
    missing = [n for n in ALGORITHMS if n not in CASES]
    mpi_assert(not missing, f"algorithms without a fault case (add them to CASES): {missing}")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("name", ALGORITHMS)
def test_fault(name, fault, target, files, healthy, monkeypatch):
    TALLY["tried"] += 1
    args, kwargs, _, _, step = CASES[name]
    inputs, cls, text = bad_inputs(name, fault, target, files)
    before = {k: (v.copy() if isinstance(v, np.ndarray) else None) for k, v in inputs.items()}
    if fault == "exception":
        where = "*" if target == "every rank" else str(target_ranks(target)[0])
        monkeypatch.setenv("CLUSTERML_INJECT_FAULT", f"{step}@{where}")
    t0 = time.monotonic()
    try:
        REGISTRY[name](*args, **kwargs, distributed=True).compute(**inputs)
    except cml.DistributedError as exc:
        err = exc
    else:
        err = None
    elapsed = time.monotonic() - t0
    monkeypatch.delenv("CLUSTERML_INJECT_FAULT", raising=False)
    TALLY["slowest"] = max(TALLY["slowest"], elapsed)
    if elapsed > ERROR_WITHIN:
        TALLY["hangs"] += 1
    want = target_ranks(target)
    mpi_assert(isinstance(err, cls), f"{name}/{fault}/{target}: expected {cls.__name__}, got {err!r}")
    mpi_assert(text in str(err), f"{name}/{fault}/{target}: {text!r} not in {str(err)!r}")
    mpi_assert(err.ranks == want, f"{name}/{fault}/{target}: ranks {err.ranks}, expected {want}")
    for r in want:
        mpi_assert(f"rank {r}" in str(err) or f"ranks {', '.join(map(str, want))}" in str(err),
                   f"rank {r} not named in {str(err)!r}")
    mpi_assert(elapsed < ERROR_WITHIN, f"{name}/{fault}/{target}: error after {elapsed:.1f} s")
    # the error leaves the same message everywhere
    msgs = world().allgather(str(err))
    mpi_assert(len(set(msgs)) == 1, f"messages differ between ranks: {msgs}")
    # the user's arrays were not modified
    for k, v in inputs.items():
        if before[k] is not None:
            mpi_assert(np.array_equal(v, before[k], equal_nan=True), f"input {k} was modified")
    # the next call on the same communicator is correct
    again = digest(REGISTRY[name](*args, **kwargs, distributed=True).compute(**good_inputs(name, files)))
    mpi_assert(again == healthy[name], f"{name}: the call after a {fault} fault differs")
    TALLY["passed"] += 1


def test_fault_matrix_summary(capsys):
    expected = len(ALGORITHMS) * len(FAULTS) * len(TARGETS)
    if rank() == 0:
        # on stderr: several ranks share stdout, whose per-rank pytest summaries are counted
        with capsys.disabled():
            print(f"\n[fault matrix mpiexec -n {size()}] cases tried {TALLY['tried']}, passed "
                  f"{TALLY['passed']}, hangs {TALLY['hangs']}, slowest error "
                  f"{TALLY['slowest']:.2f} s", file=sys.stderr, flush=True)
    mpi_assert(TALLY["passed"] == TALLY["tried"] and TALLY["hangs"] == 0,
               f"fault matrix: {TALLY}, expected {expected} cases")
