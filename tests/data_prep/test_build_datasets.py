"""`limit-foundry data` through its root shim `data_prep/build_datasets.py`: options, exit codes, progress,
overlap report, reproducible bytes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "data_prep" / "build_datasets.py"
_spec = importlib.util.spec_from_file_location("build_datasets", SCRIPT)
cli = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cli)


@pytest.fixture
def samples() -> Path:
    path = REPO / "limit_foundry" / "assets" / "samples"
    if not (path / "lima" / "train.jsonl").is_file():
        pytest.skip(f"sample datasets absent: {path}")
    return path


def sample_args(samples: Path) -> list[str]:
    return [f"--source-path={name}={samples / name}" for name in ("lima", "instruct_v1", "instruct_v3")]


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--recipe", "--out", "--seed", "--source-path", "--tokenizer", "--on-bad-row", "--check-overlap",
                   "--heldout", "--dedup", "--user-source", "--columns", "--template", "--lima-multi-turn"):  # fmt: skip
        assert option in out
    assert "default: 17" in out and "instruct_v1_5k_lima" in out


def test_builds_then_reports_up_to_date(
    tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "--recipe",
        "lima:all,instruct_v1:20",
        "--recipe",
        "instruct_v3:30:stratified",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    assert cli.main(args + sample_args(samples)) == 0
    out = capsys.readouterr().out
    assert (
        f"built: {tmp_path / 'lima-all+instruct_v1-20'} rows" in out and "dropped 4" in out
    )  # LIMA's multi-turn rows
    manifest = json.loads((tmp_path / "lima-all+instruct_v1-20" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["per_source"] == {"instruct_v1": 20, "lima": 56}
    assert cli.main(args + sample_args(samples)) == 0
    assert capsys.readouterr().out.count("up_to_date:") == 2


def test_a_failing_recipe_is_reported_and_the_others_still_build(
    tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        [
            "--recipe",
            "instruct_v1_5k",
            "--recipe",
            "lima",
            "--out",
            str(tmp_path),
            "--quiet",
            *sample_args(samples),
        ]
    )
    assert code == 1
    captured = capsys.readouterr()
    assert "asks for 5000 rows of 'instruct_v1' but only 120 valid rows exist" in captured.err
    assert "(paper: 1000)" in captured.out  # the sample LIMA has 56 rows, and the CLI says so
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lima"]


def test_bad_rows_name_the_line_or_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = REPO / "tests" / "fixtures" / "bad_rows" / "instruct_v1_bad.jsonl"
    args = [
        "--recipe",
        "instruct_v1:all",
        "--out",
        str(tmp_path),
        "--quiet",
        f"--source-path=instruct_v1={bad}",
    ]
    assert cli.main(args) == 1
    assert f"{bad}:3: bad row: no response field" in capsys.readouterr().err
    assert not (tmp_path / "instruct_v1-all").exists()
    assert cli.main([*args, "--on-bad-row", "skip"]) == 0
    assert "dropped 4" in capsys.readouterr().out


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--recipe", "lima:lots", "--out", str(tmp_path)]) == 2
    assert "amount must be" in capsys.readouterr().err
    assert (
        cli.main(["--recipe", "lima", "--columns", "nobody=prompt:q,response:a", "--out", str(tmp_path)]) == 2
    )
    capsys.readouterr()
    assert cli.main(["--recipe", "lima", "--source-path", "lima", "--out", str(tmp_path)]) == 2
    assert "error: --source-path expects NAME=VALUE, got 'lima'" in capsys.readouterr().err


def test_user_source_and_overlap_report(
    tmp_path: Path, samples: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "mine.jsonl"
    question = json.loads((samples / "lima" / "test.jsonl").read_text().splitlines()[0])["conversations"][0]
    mine.write_text(json.dumps({"q": question, "a": "An answer that leaks the test question."}) + "\n")
    code = cli.main([
        "--recipe", "mine:all", "--out", str(tmp_path / "data"), "--quiet", "--user-source", f"mine={mine}",
        "--columns", "mine=prompt:q,response:a", "--template", "mine=lima_test", "--check-overlap",
        f"--source-path=lima={samples / 'lima'}", "--instruct-v3-test-prompts", str(samples / "instruct_v3" / "test_prompts.txt"),
    ])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "lima_test" in out and "gauntlet" in out and "unavailable" in out
    report = json.loads((tmp_path / "data" / "mine-all.overlap.json").read_text())
    lima = next(r for r in report["results"] if r["eval_set"] == "lima_test")
    assert lima["exact"]["items"] == 1 and lima["exact"]["first"][0][1] == "mine:train:0"


@pytest.mark.slow
def test_a_separate_process_writes_the_same_bytes(tmp_path: Path, samples: Path) -> None:
    args = ["--recipe", "instruct_v3:25:stratified,lima:all", "--quiet", *sample_args(samples)]
    assert cli.main([*args, "--out", str(tmp_path / "here")]) == 0
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--out", str(tmp_path / "there")],
        env=env,
        check=True,
        capture_output=True,
    )
    here = json.loads(
        (tmp_path / "here" / "instruct_v3-25-stratified+lima-all" / "manifest.json").read_text()
    )
    there = json.loads(
        (tmp_path / "there" / "instruct_v3-25-stratified+lima-all" / "manifest.json").read_text()
    )
    assert here["content_sha256"] == there["content_sha256"]
    for name in ("train/shard.00000.mds", "train/index.json", "train.rows.txt"):
        here_file = tmp_path / "here" / "instruct_v3-25-stratified+lima-all" / name
        assert (
            here_file.read_bytes()
            == (tmp_path / "there" / "instruct_v3-25-stratified+lima-all" / name).read_bytes()
        )
