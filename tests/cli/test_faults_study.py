"""Fault injection for `limit-foundry study validate` and `study run --dry-run`, end to end through the command
line (in the test process; one row also as `python -m limit_foundry.cli study ...` in a subprocess).

Every fault must stop the command before any stage with exit 2 and an `error:` naming the spec's file and
line (and the bad file's line where there is one).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_faults import PACKAGE_PARENT, CliRun, run_cli

pytestmark = pytest.mark.slow

STAGES = f"""\
gauntlet:
  version: {PACKAGE_PARENT}/yamls/demo/gauntlet_demo.yaml
  data_dir: {PACKAGE_PARENT}/limit_foundry/assets/samples/icl
generate:
  prompt_sets:
    questions: questions.jsonl
judge:
  backend: hf
  hf_model: some/judge
  comparisons:
  - [lima, instruct]
"""
PROMPTS_LINE = 16  # the line of `prompt_sets:` in the spec (11 lines of `tiny_study_spec`, then STAGES)


@pytest.fixture(scope="module")
def good_spec(tiny_study_spec) -> str:
    return tiny_study_spec("faults", STAGES)


def _spec(tmp: Path, case: str, spec: str) -> Path:
    """The spec file of `case`, from `spec` (the good spec's text)."""
    prompts = tmp / "questions.jsonl"
    prompts.write_text('{"instruction": "Why?"}\n')
    if case == "empty_prompt_file":
        prompts.write_text("")
    elif case == "prompt_file_not_json":
        prompts.write_text('{"instruction": "Why?"}\n{"instruction": "What?"\n')
    elif case == "prompt_file_not_utf8":
        prompts.write_bytes('{"instruction": "caf\u00e9"}\n'.encode("latin-1"))
    elif case == "missing_prompt_file":
        prompts.unlink()
    elif case == "unknown_key":
        spec = spec.replace("judge:\n", "judge:\n  colour: red\n")
    elif case == "not_yaml":
        spec = spec.replace("runs:\n", "runs: [\n")
    elif case == "comparison_of_an_untrained_run":
        spec = spec.replace("[lima, instruct]", "[lima, mix]")
    path = tmp / "spec.yaml"
    path.write_text(spec)
    return path


FAULTS = [  # case, message fragment ({spec}: the spec file, {tmp}: its folder, {line}: PROMPTS_LINE)
    (
        "empty_prompt_file",
        "{spec}:{line}: prompt set questions: {tmp}/questions.jsonl: no prompts",
    ),
    (
        "prompt_file_not_json",
        "{spec}:{line}: prompt set questions: {tmp}/questions.jsonl:2: not valid JSON",
    ),
    ("prompt_file_not_utf8", "{tmp}/questions.jsonl:1: not UTF-8 text (byte 0xe9"),
    (
        "missing_prompt_file",
        "{spec}:{line}: prompt set questions: {tmp}/questions.jsonl not found",
    ),
    ("unknown_key", "{spec}:19: judge.colour: unknown key"),
    ("not_yaml", "{spec}:"),
    ("comparison_of_an_untrained_run", "judge.comparisons[0]: ['mix'] not trained by this study"),
]


def check_study_fault(run: CliRun, tmp_path: Path, spec: Path, command: str, message: str) -> None:
    extra = ["--dry-run", "--out", str(tmp_path / "study")] if command == "run" else []
    done = run(["study", command, str(spec), *extra], tmp_path)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    assert message.format(spec=spec, tmp=tmp_path, line=PROMPTS_LINE) in done.stderr, done.stderr[-3000:]
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(("case", "message"), FAULTS, ids=[f[0] for f in FAULTS])
def test_study_fault_stops_before_any_stage(
    tmp_path: Path, command: str, case: str, message: str, cli_in_process: CliRun, good_spec: str
) -> None:
    check_study_fault(cli_in_process, tmp_path, _spec(tmp_path, case, good_spec), command, message)


def test_a_study_fault_through_python_m(tmp_path: Path, good_spec: str) -> None:
    """A fresh `python -m limit_foundry.cli study run --dry-run`: the message and exit status 2 arrive."""
    [(case, message)] = [fault for fault in FAULTS if fault[0] == "unknown_key"]
    check_study_fault(run_cli, tmp_path, _spec(tmp_path, case, good_spec), "run", message)


def test_a_good_spec_validates(tmp_path: Path, cli_in_process: CliRun, good_spec: str) -> None:
    done = cli_in_process(["study", "validate", str(_spec(tmp_path, "good", good_spec))], tmp_path)
    assert done.returncode == 0 and "valid" in done.stdout, done.stderr[-3000:]
