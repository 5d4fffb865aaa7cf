"""Every notebook in notebooks/ runs top to bottom, headless, on a clean kernel, and checks itself.

Each notebook starts its own local cluster of MPI engines (04 its engines through the
project's single-node Slurm) and ends with a cell that compares its key numbers with one
process (NumPy / scikit-learn) and prints ``ALL CHECKS PASSED``.  The executed notebook, an
HTML rendering and its plots are written to ``.ci/artifacts/notebooks/`` (git-ignored).

The kernel gets ``PYTHONPATH`` = this checkout and a private ``IPYTHONDIR``; the engines
that the notebook starts inherit both, so kernel and engines import this checkout and
nothing is written to ``~/.ipython``.  Afterwards no controller, ``mpiexec`` or engine of
the notebook may be left running.
"""

from __future__ import annotations

import base64
import html
import os
import subprocess
import sys
import time

import nbformat
import psutil
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NB_DIR = os.path.join(ROOT, "notebooks")
ARTIFACTS = os.path.join(ROOT, ".ci", "artifacts", "notebooks")
sys.path.insert(0, NB_DIR)

import _build  # noqa: E402  (notebooks/_build.py)

NOTEBOOKS = [os.path.splitext(os.path.basename(s))[0] for s in _build.sources()]
SLURM = {"04-on-slurm"}
DONE = "ALL CHECKS PASSED"


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks/src/NN-*.py"
    for name in NOTEBOOKS:
        assert os.path.exists(os.path.join(NB_DIR, name + ".ipynb")), f"{name}.ipynb is not built"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_stripped_and_in_sync(name):
    """No outputs or execution counts in git, kernel python3, same cells as src/<name>.py."""
    src = os.path.join(NB_DIR, "src", name + ".py")
    assert _build.problems(os.path.join(NB_DIR, name + ".ipynb"), src) == []


def test_stripped_check_can_fail(tmp_path):
    nb = _build.build(_build.sources()[0])
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="x")]
    nb.cells[-1].execution_count = 3
    nb.metadata.kernelspec.name = "myenv"
    p = tmp_path / "x.ipynb"
    nbformat.write(nb, str(p))
    found = _build.problems(str(p))
    assert any("outputs" in f for f in found) and any("execution count" in f for f in found)
    assert any("kernel" in f for f in found)


# ---------------------------------------------------------------------------
# Running them


def _my_processes(ipython_dir: str) -> list:
    """Controller, mpiexec, hydra proxies and engines of the notebook's private IPYTHONDIR."""
    out = []
    for p in psutil.process_iter(["pid", "name"]):
        if p.pid == os.getpid():
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            env = p.environ()
        except psutil.Error:
            continue
        if env.get("IPP_PROFILE_DIR", "").startswith(ipython_dir) or env.get("IPYTHONDIR") == ipython_dir:
            out.append(p)
    return out


def _wait_no_processes(ipython_dir: str, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        left = _my_processes(ipython_dir)
        if not left or time.monotonic() > deadline:
            return [(p.pid, p.info["name"]) for p in left]
        time.sleep(0.25)


def _text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":
            out.append(o["text"])
        elif o.get("output_type") == "error":
            out.append("\n".join(o.get("traceback", [])))
        elif "data" in o:
            out.append(o["data"].get("text/plain", ""))
    return "".join(out)


def _squash_cr(text: str) -> str:
    """What a terminal shows of a stream with carriage returns (progress bars)."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _to_html(nb, title: str) -> str:
    """A self-contained HTML page of an executed notebook (nbconvert's if it is installed)."""
    try:
        from nbconvert import HTMLExporter

        return HTMLExporter().from_notebook_node(nb)[0]
    except ImportError:
        pass
    import re

    ansi = re.compile(r"\x1b\[[0-9;]*m")
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:auto}"
             "pre{background:#f6f6f6;padding:.5em;overflow-x:auto}"
             "pre.out{background:#fff;border-left:3px solid #ccc}pre.err{background:#fee}</style>"]
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            parts.append(f"<div class='md'><pre style='background:none'>{html.escape(cell.source)}"
                         "</pre></div>")
            continue
        parts.append(f"<pre>[{cell.get('execution_count') or ' '}] {html.escape(cell.source)}</pre>")
        for o in cell.get("outputs", []):
            kind = o.get("output_type")
            if kind == "stream":
                parts.append(f"<pre class='out'>{html.escape(_squash_cr(ansi.sub('', o['text'])))}</pre>")
            elif kind == "error":
                tb = ansi.sub("", "\n".join(o.get("traceback", [])))
                parts.append(f"<pre class='out err'>{html.escape(tb)}</pre>")
            elif "data" in o:
                data = o["data"]
                if "image/png" in data:
                    parts.append(f"<img src='data:image/png;base64,{data['image/png']}'>")
                elif "text/html" in data:
                    parts.append(f"<div>{data['text/html']}</div>")
                elif "text/plain" in data:
                    parts.append(f"<pre class='out'>{html.escape(data['text/plain'])}</pre>")
    return "\n".join(parts)


def _save_artifacts(name: str, nb) -> None:
    os.makedirs(ARTIFACTS, exist_ok=True)
    nbformat.write(nb, os.path.join(ARTIFACTS, name + ".ipynb"))
    with open(os.path.join(ARTIFACTS, name + ".html"), "w", encoding="utf-8") as fh:
        fh.write(_to_html(nb, name))
    k = 0
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            png = o.get("data", {}).get("image/png")
            if png:
                k += 1
                with open(os.path.join(ARTIFACTS, f"{name}-{k}.png"), "wb") as fh:
                    fh.write(base64.b64decode(png))


def _kernel_env(ipython_dir: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["IPYTHONDIR"] = ipython_dir
    # one BLAS thread per process: the engines share 2 cores with the kernel
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(k, "1")
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, as in Jupyter
    return env


def run_notebook(name: str, workdir: str, ipython_dir: str, extra_env: dict | None = None):
    """Execute notebooks/<name>.ipynb on a fresh python3 kernel in ``workdir``; return it."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(os.path.join(NB_DIR, name + ".ipynb"), as_version=4)
    env = _kernel_env(ipython_dir)
    env.update(extra_env or {})
    client = NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=False,
                            resources={"metadata": {"path": workdir}})
    try:
        client.execute(env=env)
    except CellExecutionError as exc:
        _save_artifacts(name, nb)
        pytest.fail(f"{name}: a cell failed (executed copy in {ARTIFACTS}):\n{exc}")
    finally:
        left = _wait_no_processes(ipython_dir)
        for pid, _ in left:
            try:
                psutil.Process(pid).kill()
            except psutil.Error:
                pass
    _save_artifacts(name, nb)
    assert left == [], f"{name}: processes left behind: {left}"
    return nb


def _run_and_check(name: str, tmp_path) -> None:
    ipython_dir = tmp_path / "ipython"
    ipython_dir.mkdir(mode=0o700)
    work = tmp_path / "work"
    work.mkdir()
    nb = run_notebook(name, str(work), str(ipython_dir))
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert DONE in _text(last), f"{name}: the last cell did not report {DONE!r}:\n{_text(last)}"
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    pngs = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert pngs, f"{name}: no plot"


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n not in SLURM])
def test_notebook_runs_and_checks_itself(name, tmp_path):
    _run_and_check(name, tmp_path)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", [n for n in NOTEBOOKS if n in SLURM])
def test_slurm_notebook_runs_and_checks_itself(name, live_slurm, tmp_path):
    """Against the project's single-node Slurm (``live_slurm`` exports SLURM_CONF and PATH)."""
    _run_and_check(name, tmp_path)
    deadline = time.monotonic() + 60
    while True:  # cancelled jobs can take a moment to leave the queue
        q = subprocess.run(["squeue", "--noheader", "--format=%i %j %T"], capture_output=True, text=True)
        if (q.returncode == 0 and not q.stdout.strip()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert q.returncode == 0 and q.stdout.strip() == "", f"Slurm jobs left behind:\n{q.stdout}{q.stderr}"
