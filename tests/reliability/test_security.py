"""Security of a running cluster: private files, loopback sockets, signed messages, no secret
in any log; the Slurm profile listens on the configured interface only.

(Hostile values in Slurm batch scripts: tests/slurm/test_render.py and test_live_slurm.py;
 this suite adds the ones ipyparallel itself substitutes, in tests/slurm/test_render_hostile.py.)
"""

import glob
import json
import logging
import os
import stat
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

pytestmark = pytest.mark.timeout(300)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def _engine_session():
    from IPython import get_ipython

    s = get_ipython().kernel.session
    return s.key, s.signature_scheme


def test_files_and_folders_are_private(cluster):
    pdir = cluster._ipp.profile_dir
    sec = os.path.join(pdir, "security")
    assert mode(pdir) == 0o700, f"profile folder {pdir} is {mode(pdir):o}"
    assert mode(sec) == 0o700, f"{sec} is {mode(sec):o}"
    conn = glob.glob(os.path.join(sec, f"ipcontroller-{cluster.cluster_id}-*.json"))
    assert len(conn) == 2, conn  # client and engine connection files
    files = glob.glob(os.path.join(sec, "*"))
    assert os.path.join(sec, f"clusterml-{cluster.cluster_id}.json") in files
    assert os.path.join(sec, f"cluster-{cluster.cluster_id}.json") in files
    for f in files:
        assert mode(f) == 0o600, f"{f} is {mode(f):o}, expected 0600"
    # nothing anywhere in the profile is writable (or, for files, readable) by others
    for root, dirs, names in os.walk(pdir):
        for n in dirs + names:
            p = os.path.join(root, n)
            assert not mode(p) & 0o002, f"{p} is world-writable ({mode(p):o})"


def test_local_cluster_listens_on_loopback_only(cluster):
    procs = cluster._recorded_processes()
    names = {p.pid: p.name() for p in procs}
    assert "mpiexec" in names.values() and len(procs) >= 2 + cluster.n
    listening = {}
    for p in procs:
        try:
            conns = p.net_connections(kind="inet")
        except psutil.Error:
            continue
        listening[p.pid] = {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    # MPICH's mpiexec (Hydra) binds its control port to every interface, and its proxy and the
    # ranks inherit that one socket; clusterml cannot change that (documented). Every other
    # socket -- controller, engines, MPI's own transport -- is on loopback.
    hydra_ports = {port for pid, socks in listening.items() if names[pid] == "mpiexec"
                   for ip, port in socks}
    assert len(hydra_ports) <= 1, hydra_ports
    offenders = [(names[pid], ip, port) for pid, socks in listening.items() for ip, port in socks
                 if ip not in ("127.0.0.1", "::1") and port not in hydra_ports]
    assert not offenders, f"listening outside loopback: {offenders}"
    ctrl = cluster._ipp.controller.pid
    assert listening[ctrl] and all(ip == "127.0.0.1" for ip, _ in listening[ctrl])


def test_messages_are_signed(cluster, tmp_path):
    import ipyparallel as ipp

    session = cluster.client.session
    assert len(session.key) >= 16 and session.signature_scheme.startswith("hmac-")
    for f in glob.glob(os.path.join(cluster._ipp.profile_dir, "security",
                                    f"ipcontroller-{cluster.cluster_id}-*.json")):
        info = json.loads(Path(f).read_text())
        assert info["key"] and info["signature_scheme"] == session.signature_scheme
        assert info["key"].encode() == session.key
    # every engine checks the same key
    assert cluster.apply(_engine_session) == [(session.key, session.signature_scheme)] * cluster.n

    # a client with the wrong key is never answered (the controller drops unsigned messages)
    client_file = glob.glob(os.path.join(cluster._ipp.profile_dir, "security",
                                         f"ipcontroller-{cluster.cluster_id}-client.json"))[0]
    info = json.loads(Path(client_file).read_text())
    info["key"] = "0" * len(info["key"])
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(info))
    forged.chmod(0o600)
    with pytest.raises((TimeoutError, ipp.error.TimeoutError, OSError)):
        rc = ipp.Client(url_file=str(forged), timeout=5)
        try:  # if the constructor did not wait for the controller, a query must fail
            rc.wait_for_engines(1, timeout=5)
            rc[:].apply_sync(os.getpid)
        finally:
            rc.close(linger=0)
    # and the real cluster is untouched
    assert cluster.apply(os.getpid) == [e["pid"] for e in cluster.engines]


def test_nothing_secret_is_logged(cluster, caplog):
    key = cluster.client.session.key.decode()
    with caplog.at_level(logging.DEBUG):
        X = np.random.default_rng(0).normal(size=(30, 2))
        cluster.covariance().compute(X)
        cluster.status()
        repr(cluster)
    assert key not in caplog.text
    assert key not in repr(cluster) and key not in json.dumps(cluster.status(), default=str)
    leaks = []
    top = os.environ["IPYTHONDIR"]
    for root, _, names in os.walk(top):
        for n in names:
            p = os.path.join(root, n)
            if n.startswith("ipcontroller-") and n.endswith(("-client.json", "-engine.json")):
                continue  # the connection files hold the key, 0600 (checked above)
            try:
                if key.encode() in Path(p).read_bytes():
                    leaks.append(p)
            except OSError:
                pass
    assert not leaks, f"the session key appears in {leaks}"
    out = cluster._launcher_output(limit=10_000)
    assert key not in out


def test_slurm_profile_listens_on_the_configured_interface_only(tmp_path, monkeypatch):
    """The clusterml-slurm profile with ``interface="lo"``: the controller (started on this
    node, without Slurm) binds to that interface's address only, not to every interface."""
    import ipyparallel as ipp

    ipdir = tmp_path / "ipython"
    ipdir.mkdir(mode=0o700)
    monkeypatch.setenv("IPYTHONDIR", str(ipdir))
    monkeypatch.chdir(tmp_path)
    from clusterml.launch import profiles as P

    dest = ipdir / "profile_clusterml-slurm"
    P.install(["clusterml-slurm"], P.ProfileSettings(controller=dict(interface="lo")))
    c = ipp.Cluster(profile="clusterml-slurm", n=0, log_level=40, shutdown_atexit=False)
    assert c.controller_ip == "127.0.0.1" and c.controller_location == "127.0.0.1"
    c.start_controller_sync()
    try:
        # the controller writes its connection file once every socket is bound
        conn = dest / "security" / f"ipcontroller-{c.cluster_id}-client.json"
        deadline = time.monotonic() + 60
        while not conn.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert conn.exists(), "the controller did not start"
        assert json.loads(conn.read_text())["location"] == "127.0.0.1"
        p = psutil.Process(c.controller.pid)
        procs = [p] + p.children(recursive=True)
        socks = set()
        for q in procs:
            socks |= {c_.laddr.ip for c_ in q.net_connections(kind="inet")
                      if c_.status == psutil.CONN_LISTEN}
        assert socks == {"127.0.0.1"}, socks
    finally:
        c.stop_cluster_sync()
