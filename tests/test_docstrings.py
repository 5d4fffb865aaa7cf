"""Every public name is documented, and every example in a docstring runs as a doctest.

Examples are run with NumPy's print options of the docs (``legacy`` off), in one process; an
example that needs engines starts its own (the module's doctest then takes a few seconds).
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import clusterml

MODULES = sorted(m.name for m in pkgutil.walk_packages(clusterml.__path__, "clusterml.")
                 if not m.name.endswith("__main__"))


def _examples(modname):
    mod = importlib.import_module(modname)
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [t for t in finder.find(mod, modname) if t.examples]


def test_the_docstrings_hold_examples():
    found = {m: sum(len(t.examples) for t in _examples(m)) for m in MODULES}
    assert sum(found.values()) >= 20, found


@pytest.mark.parametrize("modname", [m for m in MODULES if _examples(m)])
def test_docstring_examples_run(modname, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ipython_dir = tmp_path / "ipython"  # an example that starts engines keeps ~/.ipython clean
    ipython_dir.mkdir(mode=0o700)
    monkeypatch.setenv("IPYTHONDIR", str(ipython_dir))
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags)
    with np.printoptions(legacy=False):
        for test in _examples(modname):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0
    assert result.failed == 0, f"{result.failed} docstring example(s) of {modname} failed (see above)"


def _public_names():
    for name in clusterml.__all__:
        if name.startswith("_") or name == "REGISTRY":
            continue
        yield name, getattr(clusterml, name)


@pytest.mark.parametrize("name,obj", list(_public_names()), ids=lambda v: v if isinstance(v, str) else "")
def test_public_name_has_a_numpydoc_docstring(name, obj):
    doc = inspect.getdoc(obj) or ""
    assert len(doc.strip()) > 20, f"clusterml.{name} has no docstring"
    if (inspect.isclass(obj) and not issubclass(obj, BaseException)) or inspect.isfunction(obj):
        sig = inspect.signature(obj)
        takes = [p for p in sig.parameters if p not in ("self", "args", "kwargs")]
        if takes:
            assert "Parameters\n----------" in doc, f"clusterml.{name}: no numpydoc Parameters section"
