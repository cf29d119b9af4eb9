"""The `python -m limit_foundry.generate` command line: bad input, --out-dir, --help, a real kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from limit_foundry.generate.cli import build_parser, main, run_from_args
from limit_foundry.generate.run import run_generation
from limit_foundry.io import read_jsonl_log


@pytest.mark.parametrize(
    "case",
    [
        "empty prompts",
        "duplicated ids",
        "model does not load",
        "another run's output",
        "greedy with seeds",
        "bad template",
    ],
)
def test_bad_input_is_refused_before_any_generation(
    case, tiny_llama_dir, prompts_file, tmp_path, write_jsonl, watch_batches, capsys
):
    calls = watch_batches()
    out = tmp_path / "out" / "answers.json"
    args = [
        "--model",
        str(tiny_llama_dir),
        "--prompts",
        str(prompts_file),
        "--out",
        str(out),
        "--no-progress",
    ]
    expected = {
        "empty prompts": "no prompts",
        "duplicated ids": "duplicated prompt ids (1): same",
        "model does not load": "model does not load",
        "another run's output": "holds results without a generation manifest",
        "greedy with seeds": "use --seeds 1",
        "bad template": "unknown template",
    }[case]
    if case == "empty prompts":
        args[3] = str(write_jsonl(tmp_path / "empty.jsonl", []))
    elif case == "duplicated ids":
        args[3] = str(write_jsonl(tmp_path / "dup.jsonl", [{"instruction": "a", "prompt_id": "same"}] * 2))
    elif case == "model does not load":
        broken = tmp_path / "broken"
        shutil.copytree(tiny_llama_dir, broken)
        (broken / "model.safetensors").write_bytes(b"not safetensors")
        args[1] = str(broken)
    elif case == "another run's output":
        out.parent.mkdir()
        out.write_text('[{"instruction": "q", "output": "someone else\'s"}]')
    elif case == "greedy with seeds":
        args += ["--temperature", "0", "--seeds", "3"]
    else:
        args += ["--template", "nonexistent"]
    assert main(args) == 2
    assert expected in capsys.readouterr().err
    assert calls == []
    if case != "another run's output":
        assert not out.parent.exists() or not any(out.parent.iterdir())


def test_cli_out_dir_names_files_by_generator_and_prompt_set(tiny_llama_dir, prompts_file, tmp_path, capsys):
    args = [
        "--model",
        str(tiny_llama_dir),
        "--prompts",
        str(prompts_file),
        "--out-dir",
        str(tmp_path / "gen"),
    ]
    args += ["--max-new-tokens", "4", "--generator", "run-a/ba10", "--no-progress"]
    assert main(args) == 0
    out = tmp_path / "gen" / "run-a" / "ba10" / "questions.json"
    assert f"{out}: 6 records (6 generated now, 0 resumed)" in capsys.readouterr().out
    assert {r["generator"] for r in json.loads(out.read_text())} == {"run-a/ba10"}
    assert main(args) == 0 and "already finished" in capsys.readouterr().out


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for option in ("--model", "--train-yaml", "--prompts-path", "--template", "--chat-template", "--top-p",
                   "--repetition-penalty", "--max-new-tokens", "--stop", "--seeds", "--batch-size", "--overwrite"):  # fmt: skip
        assert option in text
    flat = " ".join(text.split())  # argparse wraps lines anywhere
    for default in ("--temperature TEMPERATURE 0 = greedy (default: 0.7)", "(default: 0.9)", "(default: 1.2)",
                    "(default: 1024)", "--top-k TOP_K 0 = off (default: 0)", "--seeds SEEDS number of sampling seeds (default: 1)"):  # fmt: skip
        assert default in flat, default
    assert "defaults follow LIMA's published decoding" in flat and "LIMIT's ~1k cap" in flat
    assert "Zhou et al. 2023" in flat and "Jha et al. 2023" in flat


@pytest.mark.slow
def test_killed_process_resumes(tiny_llama_dir, tmp_path, write_jsonl, repo_root):
    prompts = write_jsonl(
        tmp_path / "many.jsonl", [{"instruction": f"Question number {i} about things?"} for i in range(12)]
    )
    out = tmp_path / "answers.json"
    args = ["--model", str(tiny_llama_dir), "--prompts", str(prompts), "--out", str(out), "--max-new-tokens", "24",
            "--batch-size", "2", "--seeds", "2", "--generator", "tiny", "--threads", "1", "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    process = subprocess.Popen(
        [sys.executable, "-m", "limit_foundry.generate", *args], env=env, cwd=repo_root
    )
    partial = tmp_path / "answers.json.partial.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if partial.exists() and len(partial.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()
    finished_before = read_jsonl_log(partial).records  # a line torn by the kill is not a finished record

    summary = run_generation(run_from_args(build_parser().parse_args(args)))
    assert summary.resumed == len(finished_before) >= 2 and summary.generated_now == 24 - summary.resumed
    assert all(record in json.loads(out.read_text()) for record in finished_before), "kept, not redone"
    reference = run_generation(
        run_from_args(build_parser().parse_args([*args[:5], str(tmp_path / "ref.json"), *args[6:]]))
    )
    assert json.loads(out.read_text()) == json.loads(reference.out.read_text())
