"""Summaries as one contiguous buffer: the wire format of clusterml's reductions.

A reduction moves per-rank *summaries* (a :class:`~clusterml.kernels.covariance.CrossProducts`,
a k-means ``LloydPartial``, a tuple of count arrays ...) up and down a tree of
ranks.  Pickling each one costs more than the arithmetic of merging it, so a
summary made of arrays and numbers travels as one byte buffer instead::

    b"D" | uint32 header length | header | padding | leaf 0 | leaf 1 | ...

The *header* describes the structure (dataclass types, tuples, dtypes and
shapes) and is pickled once per distinct structure and cached, so the hot path
only copies array bytes (and the receiver reads them back as views, without a
copy).  Anything else (Python ints beyond int64, strings, lists of objects)
falls back to a pickle (``b"P"``).  Decoding gives back the same types and
bits, so every rank that decodes one buffer holds the same result.

This module never imports MPI; :mod:`clusterml.spmd.comm` sends the buffers.
"""

from __future__ import annotations

import dataclasses
import pickle
import struct

import numpy as np

__all__ = ["encode", "decode", "encode_pickle"]

_PACKED, _PICKLED = b"D", b"P"
_ALIGN = 8
_KINDS = frozenset("biufc")


class _NotPackable(Exception):
    pass


def _flatten(obj, leaves: list):
    """The structure of ``obj``; its array leaves are appended to ``leaves``."""
    t = type(obj)
    if obj is None:
        return ("none",)
    if t is bool:
        leaves.append(np.array([obj], dtype=np.bool_))
        return ("bool",)
    if t is int:
        if not -(1 << 63) <= obj < (1 << 63):
            raise _NotPackable
        leaves.append(np.array([obj], dtype=np.int64))
        return ("int",)
    if t is float:
        leaves.append(np.array([obj], dtype=np.float64))
        return ("float",)
    if t is np.ndarray:
        if obj.dtype.kind not in _KINDS:
            raise _NotPackable
        leaves.append(obj)
        return ("array", obj.dtype.str, obj.shape)
    if isinstance(obj, np.generic) and obj.dtype.kind in _KINDS:
        leaves.append(np.asarray(obj).reshape(1))
        return ("scalar", obj.dtype.str)
    if t is tuple or t is list:
        return (t.__name__, tuple(_flatten(x, leaves) for x in obj))
    names = _field_names(t)
    if names is not None and len(getattr(obj, "__dict__", ())) == len(names):
        return ("dataclass", t, names, tuple(_flatten(getattr(obj, n), leaves) for n in names))
    raise _NotPackable  # not a dataclass, or state its constructor does not take: pickle it


_fields_of: dict = {}


def _field_names(t) -> tuple | None:
    """The constructor fields of dataclass ``t`` (None: not a dataclass that packs)."""
    if t not in _fields_of:
        fields = dataclasses.fields(t) if dataclasses.is_dataclass(t) else ()
        ok = fields and all(f.init for f in fields)
        _fields_of[t] = tuple(f.name for f in fields) if ok else None
    return _fields_of[t]


def _rebuild(node, leaves):
    kind = node[0]
    if kind == "none":
        return None
    if kind in ("bool", "int", "float"):
        return {"bool": bool, "int": int, "float": float}[kind](next(leaves)[0])
    if kind == "array":
        return next(leaves)
    if kind == "scalar":
        return next(leaves)[0]
    if kind in ("tuple", "list"):
        items = [_rebuild(c, leaves) for c in node[1]]
        return tuple(items) if kind == "tuple" else items
    cls, names, children = node[1], node[2], node[3]
    return cls(**{n: _rebuild(c, leaves) for n, c in zip(names, children, strict=True)})


def _leaf_specs(node, out: list):
    """(dtype, shape) of every leaf, in order."""
    kind = node[0]
    if kind in ("bool", "int", "float"):
        out.append(({"bool": "|b1", "int": "<i8", "float": "<f8"}[kind], (1,)))
    elif kind == "array":
        out.append((node[1], node[2]))
    elif kind == "scalar":
        out.append((node[1], (1,)))
    elif kind in ("tuple", "list"):
        for c in node[1]:
            _leaf_specs(c, out)
    elif kind == "dataclass":
        for c in node[3]:
            _leaf_specs(c, out)
    return out


def _pad(n: int) -> int:
    return -n % _ALIGN


class _Plan:
    """Everything about one structure that does not depend on the values: computed once."""

    __slots__ = ("header", "leaves", "prefix", "structure", "total")

    def __init__(self, structure, header: bytes):
        self.structure, self.header = structure, header
        start = 5 + len(header)
        start += _pad(start)
        prefix = np.zeros(start, dtype=np.uint8)
        prefix[0] = _PACKED[0]
        prefix[1:5] = np.frombuffer(struct.pack("<I", len(header)), dtype=np.uint8)
        prefix[5:5 + len(header)] = np.frombuffer(header, dtype=np.uint8)
        self.prefix = prefix
        self.leaves, pos = [], start
        for dtype, shape in _leaf_specs(structure, []):
            dt = np.dtype(dtype)
            count = int(np.prod(shape, dtype=np.int64))
            self.leaves.append((dt, count, tuple(shape), pos, count * dt.itemsize))
            pos += count * dt.itemsize + _pad(count * dt.itemsize)
        self.total = pos


_plan_of_structure: dict = {}
_plan_of_header: dict = {}


def _plan_for(structure) -> _Plan:
    plan = _plan_of_structure.get(structure)
    if plan is None:
        plan = _Plan(structure, pickle.dumps(structure, protocol=pickle.HIGHEST_PROTOCOL))
        _plan_of_structure[structure] = plan
        _plan_of_header[plan.header] = plan
    return plan


def encode(obj) -> np.ndarray:
    """``obj`` as one uint8 buffer (packed arrays, or a pickle when it has other leaves)."""
    leaves: list = []
    try:
        plan = _plan_for(_flatten(obj, leaves))
    except (_NotPackable, TypeError):  # TypeError: an unhashable structure
        return encode_pickle(obj)
    buf = np.empty(plan.total, dtype=np.uint8)
    buf[:plan.prefix.size] = plan.prefix
    for leaf, (_, _, _, pos, size) in zip(leaves, plan.leaves, strict=True):
        if size:
            buf[pos:pos + size] = np.ascontiguousarray(leaf).reshape(-1).view(np.uint8)
    return buf


def encode_pickle(obj) -> np.ndarray:
    """``obj`` pickled into a uint8 buffer (for values that are not a set of arrays)."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    buf = np.empty(len(data) + 1, dtype=np.uint8)
    buf[0] = _PICKLED[0]
    buf[1:] = np.frombuffer(data, dtype=np.uint8)
    return buf


def decode(buf: np.ndarray):
    """The object :func:`encode` packed into ``buf`` (arrays are views of ``buf``)."""
    if buf[0] == _PICKLED[0]:
        return pickle.loads(buf[1:].tobytes())
    (hlen,) = struct.unpack("<I", buf[1:5].tobytes())
    header = buf[5:5 + hlen].tobytes()
    plan = _plan_of_header.get(header)
    if plan is None:
        plan = _plan_for(pickle.loads(header))
        _plan_of_header[header] = plan
    arrays = [np.frombuffer(buf, dtype=dt, count=count, offset=pos).reshape(shape)
              for dt, count, shape, pos, _ in plan.leaves]
    return _rebuild(plan.structure, iter(arrays))
