"""The bad-input catalogue: each bad input, the error type it must raise and what its message
must say (the value and what was expected), in one process and through the facade; the
user's arrays and files are never modified.

Entries: ``(id, algorithm, args, kwargs, inputs, error class, [texts in the message])``.
``inputs`` is None when the constructor itself must refuse the parameters, else a function
of the prepared files returning the positional compute inputs.
"""

import hashlib
import os
import stat
import time

import numpy as np
import pandas as pd
import pytest
from relhelp import ERROR_WITHIN, Tally

import clusterml as cml

pytestmark = pytest.mark.timeout(300)

RNG = np.random.default_rng(11)
X = RNG.normal(size=(20, 3))
Y = X @ RNG.normal(size=(3, 1))
COUNTS = RNG.integers(0, 5, size=(20, 3)).astype(float)
LABELS = (np.arange(20) % 3).astype(float).reshape(-1, 1)


def _with(A, r, c, v):
    B = A.copy()
    B[r, c] = v
    return B


LIN_MODEL = cml.linear_regression_training().compute(X, Y).model
NB_MODEL = cml.multinomial_naive_bayes_training(3).compute(COUNTS, LABELS).model
KM_RESULT = cml.kmeans_init(2).compute(X)

E_IN, E_PAR = cml.InputError, cml.ParameterError

CATALOGUE = [
    # -- wrong types and shapes
    ("strings", "covariance", (), {}, lambda f: (np.array([["a", "b"], ["c", "d"]]),), E_IN,
     ["dtype <U1 is not numeric", "expected a float or integer array"]),
    ("complex", "covariance", (), {}, lambda f: (X.astype(complex),), E_IN,
     ["dtype complex128 is not numeric"]),
    ("datetime", "low_order_moments", (), {},
     lambda f: (np.array(["2020-01-01"] * 4, dtype="datetime64[D]"),),
     E_IN, ["dtype datetime64[D] is not numeric"]),
    ("dict", "low_order_moments", (), {}, lambda f: ({"a": 1},), E_IN, ["dtype object is not numeric"]),
    ("3-D array", "covariance", (), {}, lambda f: (np.zeros((4, 2, 2)),), E_IN,
     ["got 3-D", "expected a 1-D or 2-D array"]),
    ("ragged nested list", "covariance", (), {}, lambda f: ([[1.0, 2.0], [3.0]],), E_IN,
     ["cannot make a table of list", "expected rows of equal length"]),
    ("None", "covariance", (), {}, lambda f: (None,), E_IN, ["data: no input given (None)"]),
    ("DataFrame with text", "covariance", (), {},
     lambda f: (pd.DataFrame({"a": [1.0, 2.0, 3.0], "name": ["x", "y", "z"]}),), E_IN,
     ["non-numeric column(s) 'name'", "every column must be a number"]),
    # -- files
    ("ragged CSV rows", "covariance", (), {}, lambda f: (f["ragged.csv"],), E_IN,
     ["ragged.csv", "malformed CSV", "Expected 3 fields in line 3, saw 4"]),
    ("empty file", "covariance", (), {}, lambda f: (f["empty.csv"],), E_IN,
     ["no rows at all", "every rank's input is empty"]),
    ("header-only file", "covariance", (), {}, lambda f: (f["header.csv"],), E_IN,
     ["no rows at all"]),
    ("directory instead of a file", "covariance", (), {}, lambda f: (f["adir"],), E_IN,
     ["adir", "is a directory, expected a file"]),
    ("missing file", "covariance", (), {}, lambda f: (f["missing.csv"],), E_IN,
     ["missing.csv", "no such file"]),
    ("named pipe", "covariance", (), {}, lambda f: (f["fifo.csv"],), E_IN,
     ["fifo.csv", "not a regular file", "expected a .csv, .npy, .parquet, .h5 or .npz file"]),
    ("text column in CSV", "covariance", (), {}, lambda f: (f["text.csv"],), E_IN,
     ["text.csv", "non-numeric column(s) 'b'"]),
    ("binary garbage .csv", "covariance", (), {}, lambda f: (f["binary.csv"],), E_IN,
     ["binary.csv"]),
    ("corrupt .npy", "covariance", (), {}, lambda f: (f["garbage.npy"],), E_IN,
     ["garbage.npy", "cannot read"]),
    ("object-array .npy", "covariance", (), {}, lambda f: (f["object.npy"],), E_IN,
     ["object.npy", "cannot read"]),
    ("unsupported extension", "covariance", (), {}, lambda f: (f["data.xlsx"],), E_IN,
     ["unsupported file type '.xlsx'", "expected .csv, .npy, .parquet, .h5 or .npz"]),
    ("read_partition of a directory", "covariance", (), {},
     lambda f: (cml.read_partition(f["adir"]),), E_IN, ["is a directory"]),
    # -- values
    ("NaN", "covariance", (), {}, lambda f: (_with(X, 3, 1, np.nan),), E_IN,
     ["nan at row", "column 1", "values must be finite"]),
    ("+inf", "kmeans_init", (2,), {}, lambda f: (_with(X, 4, 2, np.inf),), E_IN,
     ["inf at row", "column 2", "values must be finite"]),
    ("-inf in responses", "linear_regression_training", (), {}, lambda f: (X, _with(Y, 0, 0, -np.inf)),
     E_IN, ["dependentVariables", "-inf at row", "values must be finite"]),
    ("huge values that overflow", "pca", (), {}, lambda f: (_with(X, 2, 0, 1e200),), E_IN,
     ["1e+200", "too large", "rescale the data"]),
    ("rows differ between data and responses", "linear_regression_training", (), {},
     lambda f: (X, Y[:5]), E_IN, ["different numbers of rows", "dependentVariables has"]),
    ("no rows at all", "low_order_moments", (), {}, lambda f: (np.empty((0, 3)),), E_IN,
     ["no rows at all"]),
    # -- models
    ("wrong model for prediction", "linear_regression_prediction", (), {},
     lambda f: (X, KM_RESULT), E_PAR,
     ["model must be the .model of a linear or ridge regression training result", "got Result"]),
    ("naive Bayes with a regression model", "multinomial_naive_bayes_prediction", (3,), {},
     lambda f: (COUNTS, LIN_MODEL), E_PAR, ["multinomial_naive_bayes_training result"]),
    ("model features != data columns", "linear_regression_prediction", (), {},
     lambda f: (X[:, :2], LIN_MODEL), E_IN, ["the model has 3 features but the data has 2 columns"]),
    ("nClasses != the model's", "multinomial_naive_bayes_prediction", (4,), {},
     lambda f: (COUNTS, NB_MODEL), E_PAR, ["nClasses=4 but the model has 3 classes"]),
    # -- counts and labels
    ("negative counts", "multinomial_naive_bayes_training", (3,), {},
     lambda f: (_with(COUNTS, 5, 1, -1.0), LABELS), E_IN, ["-1.0 at row", "non-negative counts"]),
    ("non-integer labels", "multinomial_naive_bayes_training", (3,), {},
     lambda f: (COUNTS, _with(LABELS, 1, 0, 0.5)), E_IN,
     ["0.5 at row", "not an integer class label", "expected integers in [0, 3)"]),
    ("labels out of range", "multinomial_naive_bayes_training", (3,), {},
     lambda f: (COUNTS, _with(LABELS, 2, 0, 7.0)), E_IN, ["7 at row", "outside [0, 3)"]),
    ("labels with two columns", "multinomial_naive_bayes_training", (3,), {},
     lambda f: (COUNTS, np.hstack([LABELS, LABELS])), E_IN,
     ["expected one column of class labels, got 2 columns"]),
    ("nClasses = 1", "multinomial_naive_bayes_training", (1,), {}, None, E_PAR,
     ["nClasses=1 must be >= 2"]),
    ("priors of the wrong length", "multinomial_naive_bayes_training", (3,),
     {"priorClassEstimates": [0.5, 0.5]}, None, E_PAR,
     ["priorClassEstimates has 2 values but nClasses=3"]),
    ("negative smoothing", "multinomial_naive_bayes_training", (3,), {"alpha": -1.0}, None, E_PAR,
     ["alpha=-1.0", "finite numbers > 0"]),
    # -- clusters
    ("nClusters = 0", "kmeans_init", (0,), {}, None, E_PAR, ["nClusters=0 must be >= 1"]),
    ("nClusters < 0", "kmeans", (-3, 10), {}, None, E_PAR, ["nClusters=-3 must be >= 1"]),
    ("nClusters not an integer", "kmeans_init", (2.5,), {}, None, E_PAR,
     ["nClusters=2.5 must be an integer"]),
    ("nClusters > rows", "kmeans_init", (50,), {}, lambda f: (X,), E_IN,
     ["nClusters=50 but only 20 rows in total"]),
    ("negative maxIterations", "kmeans", (2, -1), {}, None, E_PAR, ["maxIterations=-1 must be >= 0"]),
    ("initial centroids of the wrong shape", "kmeans", (2, 5), {}, lambda f: (X, X[:3]), E_IN,
     ["inputCentroids has shape (3, 3); expected (2, 3)"]),
    ("negative seed", "kmeans_init", (2,), {"seed": -1}, None, E_PAR, ["seed=-1 must be >= 0"]),
    # -- methods and parameters
    ("bad k-means init method", "kmeans_init", (2,), {"method": "kmeans++"}, None, E_PAR,
     ["method='kmeans++' is not one of", "'plusPlusDense'"]),
    ("bad PCA method", "pca", (), {"method": "nope"}, None, E_PAR,
     ["method='nope' is not one of", "'correlationDense'"]),
    ("bad estimates", "low_order_moments", (), {"estimatesToCompute": "all"}, None, E_PAR,
     ["estimatesToCompute='all' is not one of", "'estimatesAll'"]),
    ("nComponents > columns", "pca", (), {"nComponents": 5}, lambda f: (X,), E_PAR,
     ["nComponents=5 but the data has only 3 columns"]),
    ("negative ridge parameter", "ridge_regression_training", (-1.0,), {}, None, E_PAR,
     ["ridgeParameters=-1.0", "finite numbers >= 0"]),
    ("NaN ridge parameter", "ridge_regression_training", (float("nan"),), {}, None, E_PAR,
     ["ridgeParameters=nan", "finite numbers >= 0"]),
    ("ridge parameter not a number", "ridge_regression_training", ("abc",), {}, None, E_PAR,
     ["ridgeParameters='abc' must be a number"]),
    ("ridge parameters per response mismatch", "ridge_regression_training", ([1.0, 2.0],), {},
     lambda f: (X, Y), E_PAR, ["ridgeParameters has 2 values but there are 1 responses"]),
    ("svd with fewer rows than columns", "svd", (), {}, lambda f: (X[:2],), E_IN,
     ["needs at least 3 rows in total, got 2"]),
    ("regression with too few rows", "linear_regression_training", (), {"interceptFlag": True},
     lambda f: (X[:3], Y[:3]), E_IN, ["needs at least 4 rows in total, got 3"]),
    ("too many inputs", "covariance", (), {}, lambda f: (X, X), E_PAR,
     ["takes 1 input(s)", "got 2"]),
]
IDS = [c[0] for c in CATALOGUE]
# engines run as root here: a file mode cannot stop root, so this one runs in-process only
IN_PROCESS_ONLY = [("unreadable permissions", "covariance", (), {}, lambda f: (f["noperm.csv"],),
                    E_IN, ["noperm.csv", "permission denied"])]

TALLY = {"in-process": Tally("bad inputs, in one process"), "facade": Tally("bad inputs, facade")}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad-inputs")
    d.chmod(0o755)  # the permission case runs as an unprivileged user, who must reach the files
    os.chmod(d.parent, 0o755)
    f = {}

    def put(name, data):
        p = d / name
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        f[name] = str(p)

    put("ragged.csv", "1,2,3\n4,5,6\n7,8,9,10\n")
    put("empty.csv", "")
    put("header.csv", "a,b,c\n")
    put("text.csv", "a,b\n1,x\n3,4\n")
    put("binary.csv", bytes(range(256)) * 4)
    put("garbage.npy", b"\x93NUMPY not really" * 4)
    put("data.xlsx", "PK not a spreadsheet")
    put("noperm.csv", "1,2\n3,4\n")
    os.chmod(f["noperm.csv"], 0)
    np.save(d / "object.npy", np.array([{"a": 1}, 2], dtype=object), allow_pickle=True)
    f["object.npy"] = str(d / "object.npy")
    (d / "adir").mkdir()
    f["adir"] = str(d / "adir")
    os.mkfifo(d / "fifo.csv")
    f["fifo.csv"] = str(d / "fifo.csv")
    f["missing.csv"] = str(d / "missing.csv")
    return f


def fingerprint(obj):
    """Bytes of an input (arrays, frames) or of a file's content, mode and mtime."""
    if isinstance(obj, np.ndarray):
        return (obj.dtype.str, obj.shape, obj.tobytes() if obj.dtype.kind != "O" else repr(obj))
    if isinstance(obj, pd.DataFrame):
        return repr(obj)
    if isinstance(obj, str) and os.path.lexists(obj):
        st = os.lstat(obj)
        content = None
        if stat.S_ISREG(st.st_mode):
            try:
                with open(obj, "rb") as fh:
                    content = hashlib.sha256(fh.read()).hexdigest()
            except PermissionError:
                pass
        return (st.st_mode, st.st_mtime_ns, st.st_size, content)
    if isinstance(obj, cml.Result):
        return repr(obj.to_dict())
    return repr(obj)


def run_case(make, case, files, mode):
    _cid, algo, args, kwargs, inputs, _cls, _needles = case
    t0 = time.monotonic()
    err, before, given = None, None, ()
    try:
        ctor = getattr(make, algo)
        if inputs is None:
            ctor(*args, **kwargs)
        else:
            given = inputs(files)
            before = [fingerprint(g) for g in given]
            if mode == "as nobody":
                os.setegid(65534)
                os.seteuid(65534)
                try:
                    ctor(*args, **kwargs).compute(*given)
                finally:
                    os.seteuid(0)
                    os.setegid(0)
            else:
                ctor(*args, **kwargs).compute(*given)
    except cml.DistributedError as exc:
        err = exc
    elapsed = time.monotonic() - t0
    return err, elapsed, before, given


def check(case, err, elapsed, before, given):
    cid, _algo, _args, _kwargs, _inputs, cls, needles = case
    assert isinstance(err, cls), f"{cid}: expected {cls.__name__}, got {err!r}"
    for text in needles:
        assert text in str(err), f"{cid}: {text!r} not in the message {str(err)!r}"
    assert elapsed < ERROR_WITHIN
    if before is not None:
        assert [fingerprint(g) for g in given] == before, f"{cid}: the user's input was modified"


class _Local:
    """``cml.<algorithm>(...)`` in one process (distributed=False)."""

    def __getattr__(self, name):
        return getattr(cml, name)


def test_catalogue_is_big_enough():
    assert len(set(IDS)) == len(IDS) and len(IDS) + len(IN_PROCESS_ONLY) >= 30


@pytest.mark.parametrize("case", CATALOGUE + IN_PROCESS_ONLY, ids=IDS + [c[0] for c in IN_PROCESS_ONLY])
def test_in_process(case, files):
    mode = "as nobody" if case in IN_PROCESS_ONLY and os.geteuid() == 0 else "plain"
    err, elapsed, before, given = run_case(_Local(), case, files, mode)
    ok = False
    try:
        check(case, err, elapsed, before, given)
        ok = True
    finally:
        TALLY["in-process"].record(case[0], ok, elapsed)


@pytest.mark.parametrize("case", CATALOGUE, ids=IDS)
def test_through_the_facade(case, files, cluster):
    err, elapsed, before, given = run_case(cluster, case, files, "plain")
    ok = False
    try:
        check(case, err, elapsed, before, given)
        ok = True
    finally:
        TALLY["facade"].record(case[0], ok, elapsed)


def test_cluster_still_usable_and_summary(cluster, capsys):
    np.testing.assert_allclose(cluster.covariance().compute(X).covariance, np.cov(X.T))
    with capsys.disabled():
        print("\n" + TALLY["in-process"].line() + "\n" + TALLY["facade"].line())
    for t in TALLY.values():
        assert t.passed == t.tried > 0
