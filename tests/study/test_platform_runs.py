"""The platform interface: content-derived run names, mcli's states, and the local platform running real run YAMLs.

The local runs here are real detached `bash` processes with small commands standing in for training (the slow
platform study test trains for real); the mcli side is checked without the network: its states and its own
RunConfig validation of every run YAML.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from limit_foundry.errors import PlatformError
from limit_foundry.study.platform import (
    PARAMETERS_PATH,
    REPO_CLONE_PATH,
    PlatformTarget,
    SourceRepo,
    build_run,
)
from limit_foundry.study.platform_runs import (
    MAX_NAME,
    MCLI_STATES,
    TERMINAL,
    LocalPlatform,
    RunState,
    derived_run_name,
    follow,
    mcli_state,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = SourceRepo(slug="acme/limit-foundry", commit="0" * 40)
PARAMETERS = {"run_name": "limit-mpt7b-mix", "variables": {"recipe": "lima"}, "max_seq_len": 2048}


def a_run(command: str, env: dict[str, str] | None = None, **parameters) -> dict:
    """A run YAML as `submit` builds it, with a small command in place of training."""
    run = build_run({**PARAMETERS, **parameters}, PlatformTarget(cluster="c1", gpus=8, env=env or {}), SOURCE)
    run["command"] = command
    return run


def wait_until_terminal(platform: LocalPlatform, name: str, timeout_s: float = 60) -> RunState:
    deadline = time.monotonic() + timeout_s
    while (state := platform.status(name).state) not in TERMINAL:
        assert time.monotonic() < deadline, f"run {name} still {state}"
        time.sleep(0.05)
    return state


# --- names ------------------------------------------------------------------------------------------------


def test_a_derived_name_follows_the_work_not_the_schedule_or_commit() -> None:
    run = a_run("true")
    name = derived_run_name(run, "limit_7b-mix")
    assert name.startswith("limit-7b-mix-") and len(name.rsplit("-", 1)[1]) == 8
    assert derived_run_name(run, "limit_7b-mix") == name  # the same work: the same name
    rescheduled = {**run, "scheduling": {"priority": "low"}, "integrations": []}
    assert derived_run_name(rescheduled, "limit_7b-mix") == name
    assert derived_run_name(a_run("true", seed=18), "limit_7b-mix") != name  # other parameters
    assert derived_run_name(a_run("false"), "limit_7b-mix") != name  # another command


def test_a_derived_name_is_one_mcli_keeps_with_room_for_its_suffix() -> None:
    from mcli.models.run_config import FinalRunConfig

    from limit_foundry.study.platform import to_run_config

    run = a_run("true")
    run["name"] = derived_run_name(run, "A Very_Long Study Name " * 5 + "/run")
    assert len(run["name"]) <= MAX_NAME
    assert FinalRunConfig.finalize_config(to_run_config(run)).name == run["name"]  # valid as it is


def test_every_mcli_status_maps_to_a_state() -> None:
    from mcli.utils.utils_run_status import RunStatus

    for status in RunStatus:
        expected = MCLI_STATES.get(status.value, RunState.PENDING)
        assert mcli_state(status) is expected
    assert mcli_state("COMPLETED") is RunState.COMPLETED
    assert {mcli_state(s) for s in ("FAILED", "STOPPED")} == {RunState.FAILED, RunState.STOPPED}
    assert mcli_state(RunStatus.UNKNOWN) is RunState.PENDING  # not terminal: keep waiting


def test_submit_with_a_name_prefix_prints_a_derived_run_mcli_accepts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mcli import RunConfig
    from mcli.models.run_config import FinalRunConfig

    from limit_foundry.cli import submit

    args = [str(REPO_ROOT / "yamls/mpt7b_mix.yaml"), "--cluster", "c1", "--gpus", "8", "--repo", "a/b"]
    args += ["--commit", "0" * 40, "variables.save_root=s3://bucket/runs", "--dry-run"]
    assert submit.main([*args, "--name-prefix", "limit_7b-mix"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["name"].startswith("limit-7b-mix-")
    assert FinalRunConfig.finalize_config(RunConfig.from_dict(printed)).name == printed["name"]
    assert printed["parameters"]["run_name"] == "limit-mpt7b-mix"  # checkpoints keep the config's run name


# --- the local platform -----------------------------------------------------------------------------------


def test_the_local_run_reads_its_mounted_parameters_and_env_in_the_checkout(tmp_path: Path) -> None:
    command = (
        f'set -euo pipefail\ncd {REPO_CLONE_PATH}\npwd\ncat {PARAMETERS_PATH}\necho "greeting=$GREETING"\n'
    )
    run = a_run(command, env={"GREETING": "hello"})
    platform = LocalPlatform(tmp_path / "runs", REPO_ROOT)
    assert platform.status(run["name"]).state is RunState.ABSENT
    assert platform.submit(run) == run["name"]
    assert wait_until_terminal(platform, run["name"]) is RunState.COMPLETED
    log = platform.logs(run["name"]).splitlines()
    assert log[0] == str(REPO_ROOT)
    assert yaml.safe_load("\n".join(log[1:-1])) == run["parameters"]
    assert log[-1] == "greeting=hello"
    run_dir = platform.run_dir(run["name"])
    assert yaml.safe_load((run_dir / "run.yaml").read_text()) == run  # the run YAML as submitted
    # only the two path prefixes differ from the platform's command
    local = (run_dir / "command.sh").read_text()
    assert local == command.replace(REPO_CLONE_PATH, str(REPO_ROOT)).replace(
        "/mnt/config", f"{run_dir}/mnt/config"
    )


def test_the_same_run_is_never_started_twice(tmp_path: Path) -> None:
    run = a_run("true")
    platform = LocalPlatform(tmp_path, REPO_ROOT)
    platform.submit(run)
    with pytest.raises(PlatformError, match="already submitted"):
        platform.submit(run)
    wait_until_terminal(platform, run["name"])


def test_a_failed_run_is_reported_with_its_name_and_last_log_lines(tmp_path: Path) -> None:
    command = "for i in $(seq 1 40); do echo line-$i; done\necho 'ValueError: bad batch' >&2\nexit 3\n"
    run = a_run(command)
    out = io.StringIO()
    with pytest.raises(PlatformError) as err:
        follow(LocalPlatform(tmp_path, REPO_ROOT), run, poll_s=0.05, out=out)
    message = str(err.value)
    assert f"run {run['name']} failed (exit code 3)" in message
    assert "  | ValueError: bad batch" in message and "  | line-40" in message
    assert "line-10\n" not in message  # only the last lines
    assert f"run {run['name']}: submitted" in out.getvalue()


def test_a_failed_run_is_submitted_again_only_when_asked(tmp_path: Path) -> None:
    # fails on its first attempt (no marker yet), succeeds on the next: a transient failure
    run = a_run("if [ -e ../../marker ]; then echo ok; else touch ../../marker; echo boom >&2; exit 1; fi")
    run["name"] = derived_run_name(run, "study-run")
    platform = LocalPlatform(tmp_path / "runs", REPO_ROOT)
    with pytest.raises(PlatformError, match="--retry-failed"):
        follow(platform, run, poll_s=0.05, out=io.StringIO())
    with pytest.raises(PlatformError, match="boom"):  # a rerun reports it again, submits nothing
        follow(platform, run, poll_s=0.05, out=io.StringIO())
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run["name"]]
    out = io.StringIO()
    assert follow(platform, run, poll_s=0.05, out=out, retry_failed=True).state is RunState.COMPLETED
    assert f"run {run['name']}: submitted again (it had failed)" in out.getvalue()
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [run["name"], f"{run['name']}.attempt-1"]
    assert "boom" in (tmp_path / "runs" / f"{run['name']}.attempt-1" / "log").read_text()  # kept, readable
    out = io.StringIO()
    follow(platform, run, poll_s=0.05, out=out, retry_failed=True)  # a completed run is never submitted again
    assert "attached, not submitted again" in out.getvalue()
    assert len(list((tmp_path / "runs").iterdir())) == 2


def test_follow_attaches_to_a_submitted_run_instead_of_submitting_again(tmp_path: Path) -> None:
    run = a_run("sleep 0.5; echo trained >> ../../trained.log")
    run["name"] = derived_run_name(run, "study-run")
    platform = LocalPlatform(tmp_path / "runs", REPO_ROOT)
    platform.submit(run)  # an earlier client submitted it
    out = io.StringIO()
    assert follow(platform, run, poll_s=0.05, out=out).state is RunState.COMPLETED
    assert "already submitted (" in out.getvalue() and "attached, not submitted again" in out.getvalue()
    follow(platform, run, poll_s=0.05, out=io.StringIO())  # and again once it finished
    assert [p.name for p in (tmp_path / "runs").iterdir()] == [run["name"]]
    assert (tmp_path / "trained.log").read_text() == "trained\n"


def test_a_local_run_outlives_the_client_that_started_it(tmp_path: Path) -> None:
    run = a_run("sleep 1; echo finished")
    code = (
        "import sys, yaml, time; from pathlib import Path\n"
        "from limit_foundry.study.platform_runs import LocalPlatform\n"
        f"LocalPlatform(Path({str(tmp_path)!r}), Path({str(REPO_ROOT)!r})).submit(yaml.safe_load(sys.stdin.read()))\n"
        "print('submitted', flush=True); time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    client = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    client.stdin.write(yaml.safe_dump(run))
    client.stdin.close()
    assert client.stdout.readline().strip() == "submitted"
    client.send_signal(signal.SIGKILL)
    client.wait()
    platform = LocalPlatform(tmp_path, REPO_ROOT)
    assert wait_until_terminal(platform, run["name"]) is RunState.COMPLETED
    assert platform.logs(run["name"]).strip() == "finished"


def test_stop_and_a_killed_run_have_their_own_states(tmp_path: Path) -> None:
    platform = LocalPlatform(tmp_path, REPO_ROOT)
    stopped, killed = a_run("echo started; sleep 60"), a_run("echo started; sleep 60", seed=2)
    killed["name"] = "killed"
    for run in (stopped, killed):
        platform.submit(run)
    for run in (stopped, killed):
        while platform.status(run["name"]).state is not RunState.RUNNING:
            time.sleep(0.05)
    platform.stop(stopped["name"])
    assert wait_until_terminal(platform, stopped["name"]) is RunState.STOPPED
    os.killpg(int((platform.run_dir("killed") / "pid").read_text()), signal.SIGKILL)
    assert wait_until_terminal(platform, "killed") is RunState.FAILED
    assert "ended without an exit code" in platform.status("killed").detail
