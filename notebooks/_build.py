"""Build the notebooks in this folder from their reviewable sources in ``src/``.

Each ``src/NN-name.py`` is a Python file in the "percent" format that Jupyter
editors (VS Code, Spyder, jupytext) run cell by cell::

    # %% [markdown]
    # # A title
    # Some text.

    # %%
    import clusterml as cml

``python notebooks/_build.py`` writes ``NN-name.ipynb`` next to this file:
no outputs, no execution counts, kernel ``python3``, cell ids derived from the
notebook name and position (so a rebuild gives the same bytes).
``python notebooks/_build.py --check`` exits 1 if a committed notebook differs
from its source or carries outputs (the test suite runs the same check).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "src")

KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def sources() -> list[str]:
    """The notebook sources, in order (``src/NN-*.py``)."""
    return sorted(os.path.join(SRC, f) for f in os.listdir(SRC)
                  if f.endswith(".py") and f[:2].isdigit())


def parse(text: str) -> list[tuple[str, str]]:
    """Split percent-format text into ``(kind, source)`` cells, kind "code" or "markdown"."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %%"):
            kind = "markdown" if "[markdown]" in line else "code"
            cells.append((kind, []))
            continue
        if not cells:
            if line.strip():
                raise ValueError(f"text before the first '# %%' marker: {line!r}")
            continue
        kind, lines = cells[-1]
        if kind == "markdown":
            if line.strip() and not line.startswith("#"):
                raise ValueError(f"markdown line without '# ': {line!r}")
            line = line[2:] if line.startswith("# ") else line.lstrip("#")
        lines.append(line)
    out = []
    for kind, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if lines:
            out.append((kind, "\n".join(lines)))
    return out


def build(path: str) -> nbformat.NotebookNode:
    """The stripped notebook for one source file."""
    stem = os.path.splitext(os.path.basename(path))[0]
    with open(path, encoding="utf-8") as fh:
        cells = parse(fh.read())
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    for i, (kind, src) in enumerate(cells):
        cid = f"{stem[:2]}-{i:03d}"
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(src, id=cid)
        else:
            cell = nbformat.v4.new_code_cell(src, id=cid)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def target(path: str) -> str:
    return os.path.join(HERE, os.path.splitext(os.path.basename(path))[0] + ".ipynb")


def render(nb) -> str:
    return nbformat.writes(nb) + "\n"


def problems(ipynb_path: str, src_path: str | None = None) -> list[str]:
    """What is wrong with a committed notebook: outputs, counts, kernel, out of sync."""
    out = []
    nb = nbformat.read(ipynb_path, as_version=4)
    name = os.path.basename(ipynb_path)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            if cell.get("outputs"):
                out.append(f"{name}: cell {i} has committed outputs")
            if cell.get("execution_count") is not None:
                out.append(f"{name}: cell {i} has an execution count")
    ks = nb.metadata.get("kernelspec", {}).get("name")
    if ks != "python3":
        out.append(f"{name}: kernel {ks!r}, expected 'python3'")
    if src_path is not None:
        with open(ipynb_path, encoding="utf-8") as fh:
            if fh.read() != render(build(src_path)):
                out.append(f"{name}: differs from {os.path.relpath(src_path, HERE)}; "
                           f"run python notebooks/_build.py")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only check; exit 1 on a difference")
    args = ap.parse_args(argv)
    bad = []
    for src in sources():
        dst = target(src)
        if args.check:
            bad += problems(dst, src) if os.path.exists(dst) else [f"{dst}: missing"]
            continue
        text = render(build(src))
        old = pathlib.Path(dst).read_text(encoding="utf-8") if os.path.exists(dst) else None
        if old != text:
            with open(dst, "w", encoding="utf-8") as fh:
                fh.write(text)
            print(f"wrote {os.path.relpath(dst)}")
    for b in bad:
        print(b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
