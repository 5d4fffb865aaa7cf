"""The shape every daal4py-style algorithm object shares.

An algorithm is constructed with its parameters (validated once, here, with
messages naming the value and what was expected) and ``distributed``; its
``compute(...)`` loads the inputs on every rank, agrees on them in one
collective, then runs ``_compute`` which wires kernels to collectives.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
from typing import Any

import numpy as np

from ..errors import InputError, ParameterError
from . import comm
from .guard import is_agreed
from .inputs import Layout, check_finite, load_tables

__all__ = ["Algorithm", "Result", "as_fptype", "REGISTRY", "register", "check_choice", "check_int",
           "check_positive", "check_memory", "check_model_finite"]

REGISTRY: dict[str, type] = {}


def register(cls):
    """Class decorator: make an algorithm reachable by name (the facade sends names)."""
    REGISTRY[cls.__name__] = cls
    return cls


class Result:
    """A daal4py-style result: attributes, one per field, in order.

    Results pickle (they travel from engines to the notebook); :meth:`fields`
    lists the names and :meth:`to_dict` gives them as a dict.

    Parameters
    ----------
    _kind : str
        The result's kind, e.g. ``"covariance_result"`` (shown by ``repr``).
    **fields
        The fields: arrays (statistics are ``1 x features`` rows, as daal4py's),
        scalars or nested results (a model).

    Examples
    --------
    >>> import numpy as np
    >>> from clusterml.spmd import Result
    >>> r = Result("demo_result", mean=np.zeros((1, 2)), n=3)
    >>> r.fields()
    ('mean', 'n')
    >>> r
    demo_result(mean=<float64 (1, 2)>, n=3)
    """

    def __init__(self, _kind: str = "result", **fields: Any):
        self.__dict__["_kind"] = _kind
        self.__dict__["_fields"] = tuple(fields)
        self.__dict__.update(fields)

    def __setattr__(self, name, value):
        if name not in self._fields:
            self.__dict__["_fields"] = self._fields + (name,)
        self.__dict__[name] = value

    def fields(self) -> tuple:
        """Names of the result's fields, in order."""
        return self._fields

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self._fields}

    def __repr__(self):
        parts = []
        for f in self._fields:
            v = getattr(self, f)
            if isinstance(v, np.ndarray):
                parts.append(f"{f}=<{v.dtype} {v.shape}>")
            elif isinstance(v, Result):
                parts.append(f"{f}=<{v._kind}>")
            else:
                parts.append(f"{f}={v!r}")
        return f"{self._kind}({', '.join(parts)})"

    def __getstate__(self):
        return self.__dict__.copy()

    def __setstate__(self, state):
        self.__dict__.update(state)


def check_choice(name: str, value, choices) -> Any:
    if value not in choices:
        raise ParameterError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")
    return value


def check_int(name: str, value, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ParameterError(f"{name}={value!r} must be an integer")
    if minimum is not None and value < minimum:
        raise ParameterError(f"{name}={value!r} must be >= {minimum}")
    return int(value)


def check_positive(name: str, value, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{name}={value!r} must be a number") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        need = ">= 0" if allow_zero else "> 0"
        raise ParameterError(f"{name}={value!r} must be a finite number {need}")
    return v


def check_memory(what: str, nbytes: float) -> None:
    """Raise ParameterError if ``nbytes`` cannot be had on this process.

    Compared with the memory available now (psutil) and the address-space
    limit (``ulimit -v``, as ``srun --mem`` may set); the message says how
    much ``what`` needs.
    """
    avail = _available_memory()
    if nbytes > avail:
        raise ParameterError(f"{what} needs {_human(nbytes)} of memory but only {_human(avail)} "
                             f"is available on this process")


def _available_memory() -> float:
    import resource

    import psutil

    avail = float(psutil.virtual_memory().available)
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        avail = min(avail, soft - psutil.Process(os.getpid()).memory_info().vms)
    return max(avail, 0.0)


def _human(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(nbytes) < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024.0
    return ""  # pragma: no cover


def check_model_finite(name: str, values) -> None:
    """Raise InputError if a model table holds NaN or infinity (a model no training gives)."""
    arr = np.asarray(values, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(arr))
    if bad.size:
        at = tuple(int(i) for i in bad[0])
        raise InputError(f"{name} holds {arr[at]} at {list(at)} ({len(bad)} non-finite value"
                         f"{'s' if len(bad) > 1 else ''}); a model with NaN or infinity cannot "
                         f"predict -- retrain it or check how it was built")


class Algorithm:
    """Base class of every algorithm.

    Subclasses declare ``_tables`` (row-distributed inputs, in ``compute``'s
    positional order), optionally ``_extras`` (inputs that are the same on
    every rank: initial centroids, a model), and implement
    ``_compute(ctx, layout, **inputs)``.

    Parameters
    ----------
    distributed : bool
        ``True``: ``compute()`` is collective over the ranks of clusterml's
        communicator, which first agree on the call (algorithm, parameters,
        kinds of inputs); a constructor error is then held and raised on every
        rank by ``compute()``.  ``False``: this process's rows only.
    """

    _tables: tuple = ("data",)
    _extras: tuple = ()
    _result_kind = "result"
    # True when the algorithm's own kernel reveals NaN/inf (its sums turn
    # non-finite) and calls checked_partial: the loader then skips its pass.
    _kernel_checks_finite = False
    # Inputs this algorithm takes besides dense in-memory rows (spmd/inputs.py):
    # a scipy.sparse CSR ``data``, and files larger than the block size as a
    # blockwise.Stream (one-pass algorithms read them block by block).
    _accepts_sparse = False
    _streams = False
    distributed: bool = False

    def __init__(self, distributed: bool = False):
        if not isinstance(distributed, (bool, np.bool_)):
            raise ParameterError(f"distributed={distributed!r} must be True or False")
        self.distributed = bool(distributed)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _holding(cls.__dict__["__init__"])

    # -- parameters -------------------------------------------------------
    def get_params(self) -> dict:
        """The constructor's parameters (what the facade sends to engines)."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in sig.parameters if p != "self"}

    def __repr__(self):
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- compute ------------------------------------------------------------
    def compute(self, *args, **kwargs):
        """Run the algorithm on this rank's inputs (collective when distributed).

        Positional arguments follow the order of daal4py's ``compute``
        (``data`` first, then ``dependentVariables`` / ``labels``, then a
        model or initial centroids); keywords by the same names work too.
        """
        if not self.distributed:
            return self._serial_compute(args, kwargs)
        comm.set_call(lambda: _call_desc(self))   # named by stall notices
        try:
            given = _agree_on_call(self, args, kwargs)
            ctx = comm.context(True)
            try:
                result = self._run(ctx, given)
            except Exception as exc:
                if is_agreed(exc):  # raised on every rank alike already
                    raise
                # raised here only (e.g. MemoryError outside a guarded step): the others
                # hear of it in their next collective, or in this closing one
                ctx.close(exc, step=f"{type(self).__name__}")
                raise
            ctx.close(None, step=f"{type(self).__name__}")
        finally:
            comm.set_call(None)
        return result

    def _serial_compute(self, args, kwargs):
        """``distributed=False``: this process's rows; say so if other ranks wait for this one."""
        given = bind_inputs(type(self).__name__, self._tables, self._extras, args, kwargs)
        try:
            return self._run(comm.context(False), given)
        finally:   # after the work: notices sent while it ran are there too
            comm.serial_call_check(lambda: _call_desc(self))

    def _run(self, ctx, given: dict):
        tables = {n: given[n] for n in self._tables}
        extras = {n: given.get(n) for n in self._extras}
        arrays, layout = load_tables(ctx, tables, self._local_check_fn(extras),
                                     finite=not self._kernel_checks_finite, algorithm=self)
        self._check_global(layout, extras)
        return as_fptype(self._compute(ctx, layout, **arrays, **extras), self.dtype)

    @property
    def dtype(self) -> type:
        """The precision the kernels compute in: float32 for ``fptype="float"``, else float64.

        Inputs are not converted to it as a whole: float32 and float64 arrays
        reach the kernels as they are, and a kernel whose input has the other
        type converts one cache-sized block at a time (or reads it directly,
        accumulating in float64).
        """
        return np.float32 if getattr(self, "fptype", "double") == "float" else np.float64

    def _local_check_fn(self, extras):
        """Return a function that checks this rank's rows (or None)."""
        return None

    def _check_global(self, layout: Layout, extras: dict) -> None:
        """Checks that need the global layout (same outcome on every rank)."""

    def _compute(self, ctx, layout, **inputs):  # pragma: no cover - abstract
        raise NotImplementedError


def _holding(init):
    """Wrap a constructor so that, with ``distributed=True``, its errors are held.

    A held error is raised on every rank by the first collective of
    ``compute()`` (see :func:`_agree_on_call`), so the rank whose constructor
    failed does not leave the others waiting.  Serial use raises at once.
    """

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        depth = self.__dict__.get("_init_depth", 0)
        self.__dict__["_init_depth"] = depth + 1
        try:
            init(self, *args, **kwargs)
        except Exception as exc:
            dist = kwargs.get("distributed", getattr(self, "distributed", False))
            if depth or not (isinstance(dist, (bool, np.bool_)) and dist):
                raise
            if not isinstance(exc, ParameterError):
                exc = ParameterError(f"{type(self).__name__}(...): {type(exc).__name__}: {exc}")
            self.__dict__.update(distributed=True, _held_error=exc)
        finally:
            self.__dict__["_init_depth"] = depth
            if depth == 0:
                del self.__dict__["_init_depth"]

    return wrapper


def _input_kind(value) -> str:
    if value is None:
        return "missing"
    if isinstance(value, (str, os.PathLike)):
        return "file"
    return type(value).__name__ if type(value).__name__ in ("Partition", "Result") else "table"


def _canonical(value) -> str:
    """A text that is equal on two ranks iff the parameter values are equal."""
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        return f"array({arr.dtype.str}, {arr.shape}, {hashlib.sha256(arr.tobytes()).hexdigest()[:16]})"
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_canonical(v) for v in value) + "]"
    return repr(value)


def _call_desc(algo: Algorithm) -> dict:
    """The algorithm's name and parameters as a distributed call has them (for stall notices)."""
    desc = {"algorithm": type(algo).__name__}
    desc.update({k: _canonical(v) for k, v in algo.get_params().items()})
    desc["distributed"] = "True"
    return desc


def _agree_on_call(algo: Algorithm, args, kwargs) -> dict:
    """The first collective of a distributed ``compute()``: agree on the call.

    Every rank contributes a digest of the algorithm's name, its parameters
    and the kinds of its inputs (or the error its constructor or input
    binding raised); any difference raises one ParameterError on every rank
    naming the ranks and the differing values.  Returns the bound inputs.
    """
    name = type(algo).__name__
    failure = algo.__dict__.get("_held_error")
    given: dict = {}
    if failure is None:
        try:
            given = bind_inputs(name, algo._tables, algo._extras, args, kwargs)
        except ParameterError as exc:
            failure = exc
    desc: dict = {"algorithm": name}
    if failure is None:
        desc.update({k: _canonical(v) for k, v in algo.get_params().items()})
        desc.update({f"input {n}": _input_kind(given.get(n))
                     for n in tuple(algo._tables) + tuple(algo._extras)})
    key = hashlib.sha256(repr(sorted(desc.items())).encode()).digest()[:16]
    comm.context(True).agree(key, lambda: desc, failure, step=f"{name}: agree on the call")
    return given


def as_fptype(result, dtype):
    """``result`` with its floating-point arrays in ``dtype`` (float32 for ``fptype="float"``).

    Integer fields (labels, counts) and scalars keep their type; nested
    results (a model) are converted too.  Conversion happens once, on the
    small merged results and on per-row outputs; float64 results are returned
    as they are.
    """
    if dtype == np.float64 or not isinstance(result, Result):
        return result
    for name in result.fields():
        v = getattr(result, name)
        if isinstance(v, Result):
            as_fptype(v, dtype)
        elif isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.dtype != dtype:
            result.__dict__[name] = v.astype(dtype)
    return result


def bind_inputs(what: str, tables, extras, args, kwargs) -> dict:
    """Map ``compute``'s positional and keyword inputs to their names; check none is missing.

    Positional inputs follow daal4py's order: the row-distributed ``tables``
    first, then the replicated ``extras``.
    """
    names = tuple(tables) + tuple(extras)
    if len(args) > len(names):
        raise ParameterError(f"{what}.compute takes {len(names)} input(s) ({', '.join(names)}), "
                             f"got {len(args)}")
    given = dict(zip(names, args, strict=False))
    for k, v in kwargs.items():
        if k not in names:
            raise ParameterError(f"{what}.compute got an unexpected input {k!r}; "
                                 f"expected {', '.join(names)}")
        if k in given:
            raise ParameterError(f"{what}.compute got input {k!r} twice")
        given[k] = v
    missing = [n for n in tables if n not in given]
    if missing:
        raise ParameterError(f"{what}.compute is missing input(s) {', '.join(missing)}")
    return given


def checked_partial(partial, is_finite, names: tuple = ("data",)):
    """Wrap a kernel's ``partial(X, ...)`` so non-finite data raises a located InputError.

    For algorithms whose kernel sums every value anyway: a NaN or infinity
    makes those sums non-finite, and only then is the data searched for the
    offending value, saving the loader's separate pass over the data.
    ``names`` names the leading array arguments, which are searched in order.
    """

    def run(*args):
        part = partial(*args)
        if not is_finite(part):
            for arr, nm in zip(args, names, strict=False):
                check_finite(arr, nm)
            raise InputError(f"{', '.join(names)}: sums or products overflow (float32 products "
                             f"above ~1e18 with fptype='float', float64 sums otherwise); rescale "
                             f"the data or use fptype='double'")
        return part

    run.__name__ = getattr(partial, "__name__", "partial")
    return run


def require_rows(layout: Layout, needed: int, what: str) -> None:
    """Raise InputError (on every rank alike) if fewer than ``needed`` rows in total."""
    if layout.total < needed:
        raise InputError(f"{what} needs at least {needed} rows in total, got {layout.total} "
                         f"(n_samples={layout.total})")
