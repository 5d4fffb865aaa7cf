"""The quick-start notebook, run as a person runs it: Jupyter Notebook 7 in a real browser.

The test starts ``jupyter notebook`` on loopback with a private token, drives Debian's Chromium
headless through Debian's chromedriver with selenium (no browser or driver is downloaded), opens
``00-quickstart``, runs every cell from the menu (Run > Run All Cells), and then checks from the
page itself what a person would see: the engine-start progress reached its end, tables render as
HTML tables, plots appear as images, no cell shows an error, and the last cell reports
``ALL CHECKS PASSED``.  A screenshot of the finished page is kept in ``.ci/artifacts/browser/``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ARTIFACTS = os.path.join(ROOT, ".ci", "artifacts", "browser")
NOTEBOOK = "00-quickstart.ipynb"
DONE = "ALL CHECKS PASSED"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def _ensure_browser() -> None:
    """Install Debian's chromium and chromium-driver when missing (as root, like the dev Slurm)."""
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail("the browser test needs Debian's chromium and chromium-driver: "
                    "apt-get install chromium chromium-driver")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium", "chromium-driver"]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(cmd, env=env, capture_output=True, check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def notebook_server(tmp_path):
    """``jupyter notebook`` on 127.0.0.1 with a random token, in a folder holding the notebook."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(os.path.join(ROOT, "notebooks", NOTEBOOK), work / NOTEBOOK)
    ipython_dir = tmp_path / "ipython"
    ipython_dir.mkdir(mode=0o700)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, IPYTHONDIR=str(ipython_dir), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
               PYTHONPATH=ROOT + (os.pathsep + os.environ["PYTHONPATH"]
                                  if os.environ.get("PYTHONPATH") else ""))
    for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(k, "1")
    env.pop("MPLBACKEND", None)
    log = open(tmp_path / "jupyter.log", "wb")  # noqa: SIM115 - the server's stdout; closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "notebook", "--no-browser", "--allow-root",
         "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
         "--ServerApp.open_browser=False"],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.close()
                pytest.fail("jupyter notebook did not start:\n"
                            + (tmp_path / "jupyter.log").read_text(errors="replace")[-4000:])
            time.sleep(0.3)
    try:
        yield base, token, ipython_dir
    finally:
        _stop_tree(proc.pid)
        log.close()


def _stop_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    procs = [root] + root.children(recursive=True)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass


@pytest.fixture
def browser(tmp_path):
    _ensure_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,5000",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(flag)
    # an explicit driver path: selenium-manager never looks for (or downloads) a driver
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _click_menu(driver, menu: str, item: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 60)
    label = f"//div[contains(@class,'lm-MenuBar-itemLabel') and normalize-space(text())='{menu}']"
    wait.until(ec.element_to_be_clickable((By.XPATH, label))).click()
    entry = f"//div[contains(@class,'lm-Menu-itemLabel') and normalize-space(text())='{item}']"
    wait.until(ec.element_to_be_clickable((By.XPATH, entry))).click()


def _page_facts(driver) -> dict:
    """What the finished page shows, read from the DOM."""
    return driver.execute_script("""
        const q = (s) => Array.from(document.querySelectorAll(s));
        const outputs = q('.jp-OutputArea-output');
        return {
          images: q('.jp-OutputArea-output img').filter(i => i.naturalWidth > 100).length,
          tables: q('.jp-OutputArea-output table').length,
          errors: q('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]')
                    .map(e => e.innerText.slice(0, 2000)),
          stderr: q('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
                    .map(e => e.innerText.slice(0, 2000)),
          text: outputs.map(o => o.innerText).join('\\n'),
          prompts: q('.jp-InputArea-prompt').map(p => p.innerText.trim()),
        };
    """)


@pytest.mark.timeout(900)
def test_quickstart_runs_in_a_real_browser(notebook_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base, token, _ipython_dir = notebook_server
    browser.get(f"{base}/notebooks/{NOTEBOOK}?token={token}")
    # the notebook is open and its kernel idle (the status bar's execution indicator)
    WebDriverWait(browser, 120).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")
        and d.execute_script(
            "const s = document.querySelector('.jp-Notebook-ExecutionIndicator');"
            "return s ? s.getAttribute('data-status') : null;") == "idle")
    t0 = time.monotonic()
    _click_menu(browser, "Run", "Run All Cells")

    def finished(d):
        facts = _page_facts(d)
        return facts if (DONE in facts["text"] or facts["errors"]) else False

    facts = WebDriverWait(browser, 600, poll_frequency=1).until(finished)
    took = time.monotonic() - t0
    os.makedirs(ARTIFACTS, exist_ok=True)
    shot = os.path.join(ARTIFACTS, "00-quickstart.png")
    browser.save_screenshot(shot)
    print(f"\nbrowser: 00-quickstart ran in {took:.1f} s: {facts['images']} plot(s), "
          f"{facts['tables']} table(s), {len(facts['errors'])} error(s), "
          f"{len(facts['stderr'])} stderr output(s); screenshot {shot}")

    assert facts["errors"] == [], f"a cell shows an error:\n{facts['errors'][0]}"
    assert DONE in facts["text"]
    assert facts["images"] >= 2, f"plots did not appear as images: {facts['images']}"
    assert facts["tables"] >= 1, "no table rendered as HTML"
    # every code cell ran (a number in its prompt), none is still running ('[*]')
    code_prompts = [p for p in facts["prompts"] if p]
    assert code_prompts and all(p != "[*]:" for p in code_prompts), code_prompts
    # the engine-start progress completed: all engines reported, no half bar left behind
    assert "engines" in facts["text"].lower(), facts["text"][:2000]
    # warnings streamed into the page are a defect a person sees
    noisy = [s for s in facts["stderr"] if "Warning" in s]
    assert noisy == [], f"warnings shown in the page:\n{noisy[0]}"
