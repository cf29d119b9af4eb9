"""Study specs that serve models: `generate.backend` (hf, vllm, openai) and `judge.backend: vllm`.

The judge stage is run for real through the study runner against a stand-in for vLLM's interpreter: it
serves the project's fake OpenAI-compatible judge on the port the runner asks for, so the runner's
start-once, URL, key and stop logic is exercised in seconds. A real vLLM judge is tested in
tests/judge/test_vllm_judge.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from limit_foundry.cli.study import main
from limit_foundry.errors import ConfigError
from limit_foundry.study.runner import execute_stages
from limit_foundry.study.spec import load_spec
from limit_foundry.study.stages import SERVER_URL, StudyLayout
from limit_foundry.testing.processes import running_with

SPEC = """\
name: served
base_model: tiny-mpt
runs:
  lima:
    config: yamls/tiny/lima.yaml
  instruct:
    config: yamls/tiny/instruct.yaml
  mix:
    config: yamls/tiny/lima.yaml
generate:
  prompt_sets:
    questions: questions.jsonl
  backend: vllm
vllm:
  python: stand-in-vllm
  args: [--enforce-eager]
judge:
  backend: vllm
  hf_model: judge-model
  comparisons:
  - [lima, instruct]
  - [lima, mix]
"""

# vLLM's interpreter, as the runner starts it (`-m vllm.entrypoints.openai.api_server --model M
# --served-model-name N --port P ...`), standing in with the fake judge on that port, under that name.
STAND_IN = """\
#!{python}
import sys
from limit_foundry.testing.fake_openai import main
args = sys.argv[1:]
value = lambda flag: args[args.index(flag) + 1]
print("stand-in vLLM:", " ".join(args), flush=True)
sys.exit(main(["--port", value("--port"), "--model", value("--served-model-name"), "--policy", "longer"]))
"""


def write_study(tmp_path: Path, text: str = SPEC) -> Path:
    repo = Path(__file__).resolve().parents[2]
    (tmp_path / "yamls").symlink_to(repo / "yamls")
    (tmp_path / "questions.jsonl").write_text(json.dumps({"instruction": "Name a colour."}) + "\n")
    (tmp_path / "judge-model").mkdir()
    (tmp_path / "judge-model" / "config.json").write_text("{}")
    stand_in = tmp_path / "stand-in-vllm"
    stand_in.write_text(STAND_IN.format(python=sys.executable))
    stand_in.chmod(0o755)
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    return spec


def test_dry_run_serves_generation_per_model_and_the_judge_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_study(tmp_path)
    out = tmp_path / "out"
    assert (
        main(["run", str(spec), "--dry-run", "--out", str(out), "--only", "generate", "--only", "judge"]) == 0
    )
    printed = capsys.readouterr().out
    stand_in = tmp_path / "stand-in-vllm"
    assert (
        f"generate --model {out}/models/lima --backend vllm --vllm-python {stand_in} --vllm-arg=--enforce-eager"
        in printed
    )
    judge_lines = [line for line in printed.splitlines() if "limit_foundry.cli judge run" in line]
    assert len(judge_lines) == 2
    assert all(
        f"--model judge-model --backend openai --base-url '{SERVER_URL}'" in line for line in judge_lines
    )
    assert f"a vLLM server on {tmp_path}/judge-model, one for the stage" in printed


def test_openai_generation_uses_the_served_names_and_each_export_tokenizer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = SPEC.replace(
        "  backend: vllm\nvllm:",
        "  backend: openai\n  base_url: http://127.0.0.1:9/v1\n  served_models: {lima: lima-7b}\nvllm:",
    )
    spec = write_study(tmp_path, text)
    out = tmp_path / "out"
    assert main(["run", str(spec), "--dry-run", "--out", str(out), "--only", "generate"]) == 0
    printed = capsys.readouterr().out
    base = "--backend openai --base-url http://127.0.0.1:9/v1 --tokenizer"
    assert f"generate --model lima-7b {base} {out}/models/lima" in printed
    assert f"generate --model instruct {base} {out}/models/instruct" in printed  # unmapped: the run's name


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "  backend: vllm\nvllm:",
            "  backend: openai\nvllm:",
            "generate.backend: backend openai needs generate.base_url",
        ),
        ("  backend: vllm\nvllm:", "  backend: tgi\nvllm:", "generate.backend: unknown value 'tgi'"),
        (
            "  backend: vllm\nvllm:",
            "  backend: hf\n  served_models: {mixed: m}\nvllm:",
            "generate.served_models: 'mixed'",
        ),
        (
            "  hf_model: judge-model",
            "  hf_model: org/judge-on-the-hub",
            "judge.hf_model: backend vllm serves a local HF",
        ),
        ("  args: [--enforce-eager]", "  args: --enforce-eager", "vllm.args: must be a list"),
        ("  python: stand-in-vllm", "  pyhton: stand-in-vllm", "vllm.pyhton: unknown key"),
    ],
)
def test_bad_served_settings_rejected_with_their_line(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    assert old in SPEC
    spec = write_study(tmp_path, SPEC.replace(old, new, 1))
    with pytest.raises(ConfigError, match=rf"{spec}:\d+: {message}"):
        load_spec(spec)


def test_a_missing_vllm_environment_stops_the_study_before_any_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_study(tmp_path, SPEC.replace("python: stand-in-vllm", "python: no-such-python"))
    assert (
        main(["run", str(spec), "--out", str(tmp_path / "out"), "--only", "generate", "--only", "judge"]) == 2
    )
    err = capsys.readouterr().err
    assert f"{spec}:15: vllm.python: {tmp_path}/no-such-python is not a Python interpreter" in err
    assert "(needed by generate.backend and judge.backend vllm)" in err
    assert not (tmp_path / "out").exists()


def test_the_judge_stage_serves_its_model_once_for_every_comparison(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-users-real-key")  # must not be sent to a local server
    spec = load_spec(write_study(tmp_path))
    out = tmp_path / "out"
    layout = StudyLayout(out)
    for run in spec.runs:  # what the generate stage would have written
        records = [
            {
                "instruction": f"Question {i}?",
                "output": f"{run} answers {i}" + " at length" * (len(run) + i),
                "generator": run,
                "dataset": "questions",
                "datasplit": "test",
                "seed": 0,
                "prompt_id": f"q{i}",
                "finish_reason": "stop",
            }
            for i in range(3)
        ]
        path = layout.generation(run, "questions")
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(records))

    execute_stages(spec, out, ("judge",))
    log = (out / "judge" / "vllm.log").read_text()
    assert log.count("stand-in vLLM:") == 1  # one server for both comparisons
    assert "--served-model-name judge-model" in log and "--enforce-eager" in log
    assert "sk-the-users-real-key" not in log
    for other in ("instruct", "mix"):
        record = json.loads((layout.judge_dir("lima", other, "questions") / "run.json").read_text())
        assert "sk-the-users-real-key" not in json.dumps(record)
    judged = (layout.judge_dir("lima", "mix", "questions") / "judgments.jsonl").read_text().splitlines()
    assert len(judged) == 3 and all(json.loads(line)["failure"] is None for line in judged)  # one order each
    assert not running_with(str(tmp_path / "stand-in-vllm"))  # the server is gone after the stage

    execute_stages(spec, out, ("judge",))  # all current: no server is started
    assert (out / "judge" / "vllm.log").read_text().count("stand-in vLLM:") == 1
