"""Helpers of the fault-injection suites: `python -m limit_foundry.cli ...` end to end in a subprocess (the
in-process form of the same call is the `cli_in_process` fixture of conftest.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import limit_foundry

PACKAGE_PARENT = Path(limit_foundry.__file__).resolve().parents[1]
# `run(args, cwd, env=None)`: `run_cli` below, or the `cli_in_process` fixture (the same call in this process)
CliRun = Callable[..., subprocess.CompletedProcess]


def cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This checkout's package first on the path; no GPU; one torch thread (the test machines are small);
    `env` added."""
    return {
        **os.environ,
        **(env or {}),
        "PYTHONPATH": os.pathsep.join([str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]),
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }


def run_cli(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python -m limit_foundry.cli ARGS` as a user types it, its exit code and output captured."""
    return subprocess.run(
        [sys.executable, "-m", "limit_foundry.cli", *args],
        cwd=cwd,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def interrupt_cli(
    args: list[str], cwd: Path, ready: Callable[[], bool], timeout: float = 600
) -> subprocess.CompletedProcess:
    """Start the command, send SIGINT (Ctrl-C) once `ready()` holds, and wait for it to end."""

    def default_sigint() -> None:  # a child of a non-interactive shell may inherit SIGINT ignored
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    process = subprocess.Popen(
        [sys.executable, "-m", "limit_foundry.cli", *args],
        cwd=cwd,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                out, err = process.communicate()
                pytest.fail(
                    f"the command ended (rc {process.returncode}) before the interrupt:\n{err[-3000:]}"
                )
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)
