"""The vLLM server's watchdog, with a stand-in for vLLM (a process that leaves a child behind, as vLLM's API
server leaves its engine processes): the whole group ends when the client goes away or the server exits."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from limit_foundry.errors import UserError
from limit_foundry.models.vllm_server import WATCHDOG, find_vllm_python
from limit_foundry.testing.processes import live_group_members

STAND_IN = "import subprocess, sys, time; subprocess.Popen(['sleep', '120']); time.sleep(float(sys.argv[1]))"


def start(server_seconds: float, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        watchdog = subprocess.Popen(
            [sys.executable, "-c", WATCHDOG, sys.executable, "-c", STAND_IN, str(server_seconds)],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while len(live_group_members(watchdog.pid)) < 3:  # watchdog, stand-in, its child
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return watchdog


def wait_until_gone(pgid: int) -> None:
    deadline = time.monotonic() + 30
    while live_group_members(pgid):
        assert time.monotonic() < deadline, f"left behind: {live_group_members(pgid)}"
        time.sleep(0.05)


def test_the_group_ends_when_the_client_goes_away(tmp_path):
    watchdog = start(120, tmp_path / "log")
    watchdog.stdin.close()  # what the kernel does to the pipe when the client is killed
    wait_until_gone(watchdog.pid)
    watchdog.wait()
    assert "its client is gone" in (tmp_path / "log").read_text()


def test_the_group_ends_when_the_server_exits(tmp_path):
    watchdog = start(5, tmp_path / "log")
    wait_until_gone(watchdog.pid)
    watchdog.wait()
    assert "vLLM exited with status 0" in (tmp_path / "log").read_text()


def test_an_explicit_interpreter_must_exist(tmp_path):
    with pytest.raises(UserError, match="--vllm-python: .* is not a Python interpreter"):
        find_vllm_python(tmp_path / "nope")
