"""Imports: no cycles between clusterml's modules, layers point down, a light ``import clusterml``.

Every check runs in a fresh interpreter or reads the source, so what other
tests imported into this process does not matter.
"""

from __future__ import annotations

import ast
import json
import pathlib
import subprocess
import sys

import clusterml

PACKAGE = pathlib.Path(clusterml.__file__).parent

#: What must not be imported by ``import clusterml`` on a notebook client.
HEAVY = ("numba", "scipy", "pandas", "mpi4py", "ipyparallel")

#: Subsystem -> subsystems it must never import (ARCHITECTURE.md's layers; cli on top).
FORBIDDEN = {
    "kernels": {"spmd", "client", "launch", "cli", "demo"},
    "spmd": {"client", "launch", "cli", "demo"},
    "errors": {"kernels", "spmd", "client", "launch", "cli", "demo"},
    "client": {"cli", "demo"},
    "launch": {"client", "cli", "demo"},
    "demo": {"cli"},
}


def _modules() -> dict:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if not all(part.isidentifier() for part in parts):
            continue  # not a module: data shipped in the package (ipyparallel profile templates)
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _targets(mod: str, is_pkg: bool, node, known) -> list:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = mod.split(".")[:None if is_pkg else -1]
            base = base[:len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
    else:
        return []
    return [n for n in names if n in known]


def import_graph() -> dict:
    """``module -> modules of clusterml it imports``, anywhere in its source (functions too).

    Importing an enclosing package is left out: importing ``a.b.c`` always
    imports ``a`` and ``a.b`` first, which is no cycle of the code's making.
    """
    mods = _modules()
    edges = {}
    for mod, (path, is_pkg) in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for target in _targets(mod, is_pkg, node, mods):
                if target != mod and not mod.startswith(target + "."):
                    edges.setdefault(mod, set()).add(target)
    return edges


def cycles(edges: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _subsystem(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_layers_point_down():
    bad = [f"{src} imports {dst}" for src, dsts in import_graph().items() for dst in sorted(dsts)
           if _subsystem(dst) in FORBIDDEN.get(_subsystem(src), ())]
    assert bad == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _fresh(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_clusterml_is_light():
    got = _fresh(
        "import sys, json, clusterml as cml\n"
        f"before = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "names = sorted(set(cml.__all__) - set(dir(cml)))\n"
        "import clusterml.spmd.remote\n"  # what an engine unpickles first (the setup call)
        f"engine = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
        "print(json.dumps([before, names, engine]))")
    before, missing, engine = got
    assert before == [], f"import clusterml imported {before}"
    assert missing == []
    assert engine == [], f"import clusterml.spmd.remote imported {engine}"


def test_lazy_names_are_the_engine_api():
    got = _fresh(
        "import json, clusterml as cml, clusterml.spmd as spmd\n"
        "import clusterml.spmd.kmeans as km\n"  # the submodule must not shadow the algorithm
        "print(json.dumps([cml.kmeans is spmd.kmeans is km, cml.kmeans.__name__,\n"
        "                  sorted(cml.REGISTRY) == sorted(spmd.REGISTRY),\n"
        "                  all(n in cml.REGISTRY for n in ('kmeans', 'pca', 'covariance'))]))")
    assert got == [True, "kmeans", True, True]


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(m for m in _modules() if not m.endswith("__main__"))
    got = _fresh("import importlib, json\n"
                 f"names = {names!r}\n"
                 "bad = []\n"
                 "for n in names:\n"
                 "    try:\n"
                 "        importlib.import_module(n)\n"
                 "    except Exception as exc:\n"
                 "        bad.append(f'{n}: {exc!r}')\n"
                 "print(json.dumps(bad))")
    assert got == []


def test_array_inputs_do_not_wait_for_pandas():
    # An engine imports pandas in the background after loading the algorithms; a call on arrays
    # must not need it (else the first call waits for that import), a DataFrame still works.
    got = _fresh(
        "import json, sys, numpy as np, clusterml as cml\n"
        "X = np.arange(12.0).reshape(4, 3)\n"
        "cov = cml.covariance().compute(X).covariance\n"
        "arrays = 'pandas' in sys.modules\n"
        "import pandas as pd\n"
        "same = bool(np.array_equal(cml.covariance().compute(pd.DataFrame(X)).covariance, cov))\n"
        "print(json.dumps([arrays, same, bool(np.allclose(cov, np.cov(X.T)))]))")
    assert got == [False, True, True]
