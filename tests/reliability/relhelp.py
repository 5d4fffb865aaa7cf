"""Helpers of the reliability suite: counting cases, finding processes by a tag in their env."""

import os
import sys
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)
CLIENT_TESTS = os.path.join(TESTS, "client")
for _p in (TESTS, CLIENT_TESTS):
    if _p not in sys.path:
        sys.path.insert(0, _p)

ERROR_WITHIN = 30.0  # seconds: every error must reach the user within this (the contract)


class Tally:
    """Cases tried / passed / hangs of one part of the suite; prints one summary line."""

    def __init__(self, what):
        self.what, self.tried, self.passed, self.hangs, self.slowest = what, 0, 0, 0, 0.0
        self.rows = []

    def record(self, case, ok, seconds, hang=False):
        self.tried += 1
        self.passed += bool(ok)
        self.hangs += bool(hang)
        self.slowest = max(self.slowest, seconds)
        self.rows.append((case, ok, seconds))

    def line(self):
        return (f"[{self.what}] cases tried {self.tried}, passed {self.passed}, hangs {self.hangs}, "
                f"slowest {self.slowest:.2f} s")


def tagged_processes(tag_key: str, tag: str) -> list:
    """Live processes whose environment has ``tag_key=tag`` (children inherit it)."""
    out = []
    for p in psutil.process_iter(["pid", "name"]):
        if p.pid == os.getpid():
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get(tag_key) == tag:
                out.append(p)
        except psutil.Error:
            continue
    return out


def wait_gone(tag_key: str, tag: str, timeout: float = 20.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        left = tagged_processes(tag_key, tag)
        if not left or time.monotonic() > deadline:
            return [(p.pid, p.info["name"]) for p in left]
        time.sleep(0.2)


def reliability_engine_env() -> dict:
    """Engine environment: this checkout, tests/client (test algorithms), this folder and tests/.

    Functions of the test modules that engines run (``cluster.apply(_setenv, ...)``) are
    unpickled by importing their module there, which imports ``faultcases`` from tests/.
    """
    from clienthelp import engine_env

    env = engine_env()
    env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], HERE, TESTS])
    return env
