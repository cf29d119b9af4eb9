"""Where a platform run executes, behind one small interface: the MosaicML platform (mcli) or this machine.

`Platform` is four calls: submit a run YAML, its status, its last log lines, stop it. `McliPlatform` is mcli's SDK
(create_run / get_run / get_run_logs / stop_run). `LocalPlatform` runs the very same run YAML here: its `command`
with `bash -c`, its `env_variables`, and its `parameters` written where the command reads them. Only two path
prefixes of the command are rewritten: the mount `/mnt/config` becomes the run's own folder and the project's clone
path becomes the local checkout; the rest of the command is unchanged. Its `integrations` are not run: the current
checkout (first on PYTHONPATH) and this interpreter's environment (first on PATH) stand in for the git clones and
`pip install`s. A local run is detached (a new session): it outlives the client that started it, and its state
lives in files (`pid`, `exit_code`, `log`) that any later client reads.

A run followed from a study is named from its content (`<prefix>-<8 hex>`): following the same work again finds
the run already submitted (still going or finished) and attaches to it; the same work is never submitted twice.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TextIO

import yaml

from limit_foundry.errors import PlatformError
from limit_foundry.io import atomic_write_text, stable_json_hash
from limit_foundry.study.platform import (
    PARAMETERS_PATH,
    REPO_CLONE_PATH,
    Submission,
    SubmitOptions,
    platform_credentials_present,
    prepare_submission,
    run_yaml,
    to_run_config,
)

# mcli appends `-` and a 6-character id to a run's name, within Kubernetes' 63 characters (mcli's
# MAX_RUN_NAME_LENGTH): a derived name keeps to 56, its 8-hex content hash last.
MAX_NAME = 56
CONTENT_HASH_CHARS = 8
_MCLI_SUFFIX = re.compile(r"-[a-z0-9]{6}$")
# What a run's name is derived from: the work itself. Scheduling (priority, retries) and the project's commit
# are left out: a new commit of the project or a new priority does not make the same training a new run.
_WORK_KEYS = ("image", "compute", "command", "parameters", "env_variables")
LOG_TAIL = 30


class RunState(StrEnum):
    ABSENT = "absent"  # no run of this name
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


TERMINAL = (RunState.COMPLETED, RunState.FAILED, RunState.STOPPED)
FAILED = (RunState.FAILED, RunState.STOPPED)  # ended without completing: what --retry-failed submits again


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    detail: str = ""


class Platform(Protocol):
    """Where runs execute: submit a run YAML (as a dict), then ask about it by name."""

    def submit(self, run: dict[str, Any]) -> str: ...

    def status(self, name: str) -> RunStatus: ...

    def logs(self, name: str, tail: int = LOG_TAIL) -> str: ...

    def stop(self, name: str) -> None: ...


def derived_run_name(run: dict[str, Any], prefix: str) -> str:
    """`<prefix>-<8 hex>`: the prefix cleaned to a valid run name, the hash of the run's work."""
    digest = stable_json_hash({key: run.get(key) for key in _WORK_KEYS})[:CONTENT_HASH_CHARS]
    clean = re.sub(r"[^a-z0-9]+", "-", prefix.lower()).strip("-")
    clean = clean[: MAX_NAME - CONTENT_HASH_CHARS - 1].rstrip("-")
    return f"{clean}-{digest}" if clean else digest


# mcli's RunStatus values (mcli.utils.utils_run_status) as this interface's states.
MCLI_STATES: dict[str, RunState] = {
    "PENDING": RunState.PENDING,
    "QUEUED": RunState.PENDING,
    "STARTING": RunState.RUNNING,
    "RUNNING": RunState.RUNNING,
    "TERMINATING": RunState.RUNNING,
    "COMPLETED": RunState.COMPLETED,
    "STOPPED": RunState.STOPPED,
    "FAILED": RunState.FAILED,
}


def mcli_state(status: Any) -> RunState:
    """An mcli run status (enum or text) as a state; UNKNOWN and anything new count as pending."""
    text = str(getattr(status, "value", status)).upper()
    return MCLI_STATES.get(text, RunState.PENDING)


class McliPlatform:
    """The MosaicML platform through mcli's SDK; needs an API key (MOSAICML_API_KEY or `mcli set api-key`).

    mcli names a created run `<name>-<6 chars>`; a name asked about is found among the user's runs by that
    pattern, so a client that was killed right after submitting still finds its run.
    """

    def __init__(self, search_limit: int = 1000) -> None:
        if not platform_credentials_present():
            raise PlatformError("no MosaicML API key: set MOSAICML_API_KEY or run `mcli set api-key`")
        self.search_limit = search_limit
        self._created: dict[str, str] = {}  # name asked for -> name on the platform

    def submit(self, run: dict[str, Any]) -> str:
        import mcli

        created = mcli.create_run(to_run_config(run))
        self._created[run["name"]] = str(getattr(created, "name", run["name"]))
        return self._created[run["name"]]

    def _platform_name(self, name: str) -> str | None:
        if name not in self._created:
            import mcli

            found = [
                run
                for run in mcli.get_runs(limit=self.search_limit)
                if run.name == name
                or (run.name.startswith(name) and _MCLI_SUFFIX.fullmatch(run.name[len(name) :]))
            ]
            if not found:
                return None
            # the latest submission of the name (an earlier one may have failed and been submitted again)
            newest = max(found, key=lambda run: str(getattr(run, "created_at", "") or ""))
            self._created[name] = newest.name
        return self._created[name]

    def status(self, name: str) -> RunStatus:
        import mcli

        platform_name = self._platform_name(name)
        if platform_name is None:
            return RunStatus(RunState.ABSENT)
        run = mcli.get_run(platform_name)
        detail = " ".join(part for part in (platform_name, str(run.reason or "")) if part)
        return RunStatus(mcli_state(run.status), detail)

    def logs(self, name: str, tail: int = LOG_TAIL) -> str:
        import mcli

        platform_name = self._platform_name(name)
        if platform_name is None:
            raise PlatformError(f"no run {name} on the platform")
        return "".join(mcli.get_run_logs(platform_name, tail=tail))

    def stop(self, name: str) -> None:
        import mcli

        platform_name = self._platform_name(name)
        if platform_name is None:
            raise PlatformError(f"no run {name} on the platform")
        mcli.stop_run(platform_name)


# The local run's wrapper: record its own pid, run the command, record the exit code (each file written whole).
# $1: the run folder, $2: the command.
_WRAPPER = (
    'echo $$ > "$1/pid.tmp" && mv "$1/pid.tmp" "$1/pid"\n'
    'bash -c "$2"\n'
    'echo $? > "$1/exit_code.tmp" && mv "$1/exit_code.tmp" "$1/exit_code"\n'
)
_MOUNT_DIR = str(Path(PARAMETERS_PATH).parent)


def _rewrite_prefix(command: str, prefix: str, local: Path) -> str:
    """`prefix` as a whole path component (not inside another path) replaced by `local`, quoted for bash."""
    pattern = re.compile(rf"(?<![\w./-]){re.escape(prefix)}(?=/|\s|$|;)")
    return pattern.sub(lambda _: shlex.quote(str(local)), command)


class LocalPlatform:
    """Runs platform run YAMLs on this machine, one folder per run under `root`:

    <root>/<name>/run.yaml                      the run YAML as submitted
    <root>/<name>/mnt/config/parameters.yaml    its `parameters`, where the command reads them
    <root>/<name>/command.sh                    the command as run (two path prefixes rewritten)
    <root>/<name>/log                           stdout and stderr
    <root>/<name>/pid, exit_code, stopped       the run's state
    <root>/<name>.attempt-<n>/                  an earlier run of that name that failed, submitted again
    """

    def __init__(self, root: Path, checkout: Path) -> None:
        self.root = Path(root)
        self.checkout = Path(checkout).resolve()

    def run_dir(self, name: str) -> Path:
        return self.root / name

    def local_command(self, command: str, run_dir: Path) -> str:
        command = _rewrite_prefix(command, _MOUNT_DIR, run_dir / _MOUNT_DIR.lstrip("/"))
        return _rewrite_prefix(command, REPO_CLONE_PATH, self.checkout)

    def environment(self, run: dict[str, Any]) -> dict[str, str]:
        """This process's environment with the run's variables, this venv and the checkout first."""
        env = {**os.environ, **{str(k): str(v) for k, v in (run.get("env_variables") or {}).items()}}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.checkout), env.get("PYTHONPATH", "")) if p)
        return env

    def submit(self, run: dict[str, Any]) -> str:
        to_run_config(run)  # the same validation as a submission to the platform
        name = str(run["name"])
        run_dir = self.run_dir(name)
        self.root.mkdir(parents=True, exist_ok=True)
        if run_dir.is_dir() and self.status(name).state in FAILED:
            attempt = 1 + sum(1 for _ in self.root.glob(f"{name}.attempt-*"))
            os.replace(run_dir, self.root / f"{name}.attempt-{attempt}")  # its log stays readable there
        try:
            run_dir.mkdir()  # exclusive: two clients cannot both start this run
        except FileExistsError:
            raise PlatformError(f"run {name} was already submitted ({run_dir})") from None
        atomic_write_text(run_dir / "run.yaml", run_yaml(run))
        parameters = run_dir / PARAMETERS_PATH.lstrip("/")
        parameters.parent.mkdir(parents=True)
        atomic_write_text(parameters, yaml.safe_dump(run.get("parameters") or {}, sort_keys=False))
        command = self.local_command(str(run["command"]), run_dir)
        atomic_write_text(run_dir / "command.sh", command)
        with open(run_dir / "log", "ab") as log:
            subprocess.Popen(
                ["bash", "-c", _WRAPPER, "limit-foundry-local-run", str(run_dir.resolve()), command],
                cwd=run_dir,
                env=self.environment(run),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # not killed with the client's process group
            )
        return name

    def _alive(self, pid: int, run_dir: Path) -> bool:
        """Whether `pid` is still this run's wrapper (its command line names the run folder)."""
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.parent.parent.is_dir() and Path("/proc/self").exists():
            try:
                return str(run_dir.resolve()).encode() in cmdline.read_bytes()
            except OSError:
                return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def status(self, name: str) -> RunStatus:
        run_dir = self.run_dir(name)
        if not run_dir.is_dir():
            return RunStatus(RunState.ABSENT)
        exit_file, pid_file = run_dir / "exit_code", run_dir / "pid"
        stopped = (run_dir / "stopped").exists()
        if exit_file.is_file():
            code = int(exit_file.read_text().strip())
            if code == 0:
                return RunStatus(RunState.COMPLETED, "exit code 0")
            return RunStatus(RunState.STOPPED if stopped else RunState.FAILED, f"exit code {code}")
        if not pid_file.is_file():
            return RunStatus(RunState.PENDING, "starting")
        pid = int(pid_file.read_text().strip())
        if self._alive(pid, run_dir):
            return RunStatus(RunState.RUNNING, f"pid {pid}: {_last_line(run_dir / 'log')}")
        if stopped:
            return RunStatus(RunState.STOPPED, "stopped")
        return RunStatus(RunState.FAILED, f"pid {pid} ended without an exit code (killed)")

    def logs(self, name: str, tail: int = LOG_TAIL) -> str:
        log = self.run_dir(name) / "log"
        if not log.is_file():
            raise PlatformError(f"no local run {name} under {self.root}")
        return "".join(log.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-tail:])

    def stop(self, name: str) -> None:
        run_dir = self.run_dir(name)
        if self.status(name).state in TERMINAL:
            return
        if not run_dir.is_dir():
            raise PlatformError(f"no local run {name} under {self.root}")
        atomic_write_text(run_dir / "stopped", "")
        pid_file = run_dir / "pid"
        if pid_file.is_file():
            pid = int(pid_file.read_text().strip())
            if self._alive(pid, run_dir):
                os.killpg(pid, signal.SIGTERM)


def _last_line(log: Path, width: int = 100) -> str:
    """The log's last non-empty line, shortened: what a status line shows of a running job."""
    try:
        with open(log, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 4096))
            lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    last = next((line for line in reversed(lines) if line), "")
    return last if len(last) <= width else last[: width - 3] + "..."


def failure_message(platform: Platform, name: str, status: RunStatus, tail: int = LOG_TAIL) -> str:
    """A finished, unsuccessful run: its name, state, and its last log lines."""
    try:
        logs = platform.logs(name, tail)
    except PlatformError as err:
        logs = f"(no logs: {err})"
    lines = "\n".join(f"  | {line}" for line in logs.rstrip("\n").splitlines()) or "  | (empty log)"
    return (
        f"run {name} {status.state.value} ({status.detail}); its last {tail} log lines:\n{lines}\n"
        "(after a fix that changes the run, rerun as before; to submit the same run again: --retry-failed)"
    )


def follow(
    platform: Platform,
    run: dict[str, Any],
    poll_s: float = 10.0,
    out: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    retry_failed: bool = False,
) -> RunStatus:
    """Submit the run unless one of its name exists, then wait for it with a status line per change.

    Returns the completed status; a failed or stopped run raises PlatformError with its last log lines. With
    `retry_failed`, a run of this name that failed or was stopped earlier is submitted again (never one that
    completed or is still going).
    """
    out = out or sys.stdout
    name = str(run["name"])
    status = platform.status(name)
    if should_submit(status.state, retry_failed):
        platform.submit(run)
        again = "" if status.state is RunState.ABSENT else f" again (it had {status.state.value})"
        print(f"run {name}: submitted{again}", file=out, flush=True)
        status = platform.status(name)
    else:
        print(
            f"run {name}: already submitted ({status.state.value}); attached, not submitted again",
            file=out,
            flush=True,
        )
    started, shown = clock(), None
    while status.state not in TERMINAL:
        line = f"run {name}: {status.state.value} {status.detail}".rstrip()
        if line != shown:
            print(f"{line} [{clock() - started:.0f} s]", file=out, flush=True)
            shown = line
        time.sleep(poll_s)
        status = platform.status(name)
    if status.state is not RunState.COMPLETED:
        raise PlatformError(failure_message(platform, name, status))
    print(f"run {name}: completed [{clock() - started:.0f} s]", file=out, flush=True)
    return status


def should_submit(state: RunState, retry_failed: bool) -> bool:
    """No run of the name yet, or (when asked) one that failed or was stopped: the same work is never
    submitted twice otherwise."""
    return state is RunState.ABSENT or (retry_failed and state in FAILED)


def platform_for(options: SubmitOptions) -> Platform:
    """The local platform when `options.local_root` is set, else the MosaicML platform."""
    if options.local_root is not None:
        return LocalPlatform(options.local_root, options.project_dir)
    return McliPlatform()


def named_submission(options: SubmitOptions) -> tuple[dict[str, Any], Submission]:
    """The run as `submit` would submit it, named from its content with `name_prefix` or `follow`."""
    run, submission = prepare_submission(options)
    if options.name_prefix or options.follow:
        run["name"] = derived_run_name(run, options.name_prefix or run["name"])
        submission.run_yaml = run_yaml(run)
    return run, submission


def submit(options: SubmitOptions, out: TextIO | None = None) -> Submission:
    """Compose, pre-flight, build and validate the run; then (unless dry) submit it, or follow it.

    With `options.name_prefix` or `options.follow` the run is named from its content and a run of that name is
    attached to, never submitted again; `options.follow` waits until it finishes.
    """
    run, submission = named_submission(options)
    if options.dry_run:
        return submission
    platform = platform_for(options)
    out = out or sys.stdout
    for warning in submission.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    print("\n".join(submission.arithmetic.lines()), file=out, flush=True)
    if options.follow:
        follow(platform, run, options.poll_s, out, retry_failed=options.retry_failed)
        submission.created = run["name"]
    elif options.name_prefix and not should_submit(platform.status(run["name"]).state, options.retry_failed):
        print(f"run {run['name']}: already submitted; not submitted again", file=out, flush=True)
        submission.created = run["name"]
    else:
        submission.created = platform.submit(run)
        print(f"submitted run {submission.created}", file=out, flush=True)
    return submission
