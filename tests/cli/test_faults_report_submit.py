"""Fault injection for `limit-foundry report` and `limit-foundry submit`: each bad input or fault, run end to end
through the command line, ends with the documented exit code and an `error:` line naming what is wrong.

The rows run in the test process; `report` also runs as `python -m limit_foundry.cli report` here, and `submit`
as `python -m limit_foundry.submit` in test_submit.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_faults import CliRun, run_cli

REPO = Path(__file__).resolve().parents[2]
SUBMIT = ["submit", "--cluster", "c", "--repo", "me/project", "--commit", "0" * 40, "--dry-run"]
BUCKET = "variables.save_root=s3://bucket/runs"

pytestmark = pytest.mark.slow


def write_study_json(study: Path, text: str) -> Path:
    (study / "study.json").write_text(text)
    return study


def write_empty_judge_run(study: Path) -> None:
    """A study whose judge stage created its run directory and then died before any judgment."""
    write_study_json(study, json.dumps({"spec": {"name": "s", "path": "s.yaml"}, "stages": {}}))
    run = study / "judge" / "lima_vs_mix" / "lima_test"
    run.mkdir(parents=True)
    (run / "judgments.jsonl").write_text("")


REPORT_CASES = {
    "study directory missing": (lambda tmp: tmp / "absent", 2, "study.json: missing"),
    "not a study directory": (lambda tmp: tmp, 2, "study.json: missing"),
    "study.json of something else": (
        lambda tmp: write_study_json(tmp, '{"stages": {}}'),
        2,
        "not a study record",
    ),
    "study.json cut short": (lambda tmp: write_study_json(tmp, '{"spec": {"na'), 2, "not valid JSON"),
}

SUBMIT_CASES = {
    "config file missing": (["yamls/absent.yaml", "--gpus", "8", BUCKET], 2, "config file not found"),
    "global batch does not divide by the GPUs": (
        ["yamls/mpt30b_mix.yaml", "--gpus", "16", BUCKET],
        2,
        "nearest valid GPU counts: 12 or 18",
    ),
    "local save_root on the platform": (
        ["yamls/mpt7b_mix.yaml", "--gpus", "8"],
        2,
        "variables.save_root=s3://",
    ),
    "no GPUs": (["yamls/mpt7b_mix.yaml", "--gpus", "0", BUCKET], 2, "--gpus must be at least 1"),
    "a credential in the run's environment": (
        ["yamls/mpt7b_mix.yaml", "--gpus", "8", BUCKET, "--env", "OPENAI_API_KEY=sk-x"],
        2,
        "look like credentials",
    ),
    "override of an unknown top-level key": (
        ["yamls/mpt7b_mix.yaml", "--gpus", "8", BUCKET, "no_such_key=1"],
        2,
        "no_such_key",
    ),
}


def check(done: subprocess.CompletedProcess, exit_code: int, fragment: str) -> None:
    assert done.returncode == exit_code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    if exit_code == 2:
        error_lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert error_lines, done.stderr
        assert fragment in "\n".join(error_lines), done.stderr


@pytest.mark.parametrize("case", sorted(REPORT_CASES))
def test_report_faults(case: str, tmp_path: Path, cli_in_process: CliRun) -> None:
    make_dir, exit_code, fragment = REPORT_CASES[case]
    check(cli_in_process(["report", str(make_dir(tmp_path))], cwd=tmp_path), exit_code, fragment)


def test_report_on_a_judge_run_that_recorded_nothing_names_its_file(
    tmp_path: Path, cli_in_process: CliRun
) -> None:
    write_empty_judge_run(tmp_path)
    check(cli_in_process(["report", str(tmp_path)], cwd=tmp_path), 2, "judgments.jsonl")


def test_a_report_fault_through_python_m(tmp_path: Path) -> None:
    """A fresh `python -m limit_foundry.cli report`: the message and exit status 2 arrive."""
    check(run_cli(["report", str(tmp_path / "absent")], cwd=tmp_path), 2, "study.json: missing")


@pytest.mark.parametrize("case", sorted(SUBMIT_CASES))
def test_submit_faults(case: str, cli_in_process: CliRun) -> None:
    args, exit_code, fragment = SUBMIT_CASES[case]
    check(cli_in_process([*SUBMIT, *args], cwd=REPO), exit_code, fragment)


def test_submit_dry_run_of_a_valid_run_exits_0(cli_in_process: CliRun) -> None:
    done = cli_in_process([*SUBMIT, "yamls/mpt7b_mix.yaml", "--gpus", "8", BUCKET], cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "# pre-flight:" in done.stdout
