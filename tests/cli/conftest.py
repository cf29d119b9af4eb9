"""The command line run in the test process: fault tables check messages and exit codes without paying a
fresh interpreter (and `import llmfoundry`) per row; each command keeps one `python -m` subprocess test."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from limit_foundry.cli import main


@pytest.fixture
def cli_in_process(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., subprocess.CompletedProcess]:
    """`call(args, cwd, env=None)`: `limit-foundry ARGS` as `python -m limit_foundry.cli` ends it (exit code,
    stdout, stderr), run by the dispatcher's `main` in this process from `cwd` with `env` added.

    An exception the command does not turn into an exit code propagates and fails the test: the subprocess
    form would have printed a traceback.
    """

    def call(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        monkeypatch.chdir(cwd)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        capfd.readouterr()  # only this command's output
        try:
            code = main(list(args))
        except SystemExit as stop:  # argparse's usage errors and --help end this way
            code = 0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1
        out, err = capfd.readouterr()
        return subprocess.CompletedProcess(["limit-foundry", *args], code, out, err)

    return call
