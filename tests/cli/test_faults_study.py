"""Fault injection for `limit-foundry study validate` and `study run --dry-run`, end to end.

Every fault must stop the command before any stage with exit 2 and an `error:` naming the spec's file and
line (and the bad file's line where there is one).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_faults import PACKAGE_PARENT, run_cli

pytestmark = pytest.mark.slow

SPEC = f"""\
name: faults
base_model: tiny-mpt
data:
  source_paths:
    lima: {PACKAGE_PARENT}/limit_foundry/assets/samples/lima
    instruct_v1: {PACKAGE_PARENT}/limit_foundry/assets/samples/instruct_v1
runs:
  lima:
    config: {PACKAGE_PARENT}/yamls/tiny/lima.yaml
  instruct:
    config: {PACKAGE_PARENT}/yamls/tiny/instruct.yaml
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
PROMPTS_LINE = 16  # the line of `prompt_sets:` above


def _spec(tmp: Path, case: str) -> Path:
    spec, prompts = SPEC, tmp / "questions.jsonl"
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


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize(("case", "message"), FAULTS, ids=[f[0] for f in FAULTS])
def test_study_fault_stops_before_any_stage(tmp_path: Path, command: str, case: str, message: str) -> None:
    spec = _spec(tmp_path, case)
    extra = ["--dry-run", "--out", str(tmp_path / "study")] if command == "run" else []
    done = run_cli(["study", command, str(spec), *extra], tmp_path)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-3000:]
    assert message.format(spec=spec, tmp=tmp_path, line=PROMPTS_LINE) in done.stderr, done.stderr[-3000:]
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert not (tmp_path / "study").exists()


def test_a_good_spec_validates(tmp_path: Path) -> None:
    done = run_cli(["study", "validate", str(_spec(tmp_path, "good"))], tmp_path)
    assert done.returncode == 0 and "valid" in done.stdout, done.stderr[-3000:]
