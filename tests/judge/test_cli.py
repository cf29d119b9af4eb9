"""`python -m limit_foundry.judge`: one parser for run, report and calibrate; clear exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from run_fixtures import API_KEY, distinct_answers, write_sides

from limit_foundry.judge.__main__ import build_parser, main


def test_help_lists_every_subcommand_and_explains_run_options(capsys):
    help_text = build_parser().format_help()
    assert "{run,report,calibrate}" in help_text
    run_help = build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for option in ("--a FILE", "--order", "--batch", "--max-cost", "--dry-run", "--cache-dir", "default"):
        assert option in run_help


def test_run_then_report_from_the_command_line(tmp_path, server, monkeypatch, capsys):
    a, b = write_sides(tmp_path, *distinct_answers(3))
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    args = ["run", "--a", str(a[0]), "--a", str(a[1]), "--b", str(b[0]), "--b", str(b[1])]
    args += ["--out", str(tmp_path / "out"), "--model", "fake-judge", "--base-url", server.base_url]
    args += ["--cache-dir", str(tmp_path / "cache"), "--price-input", "1", "--price-output", "2"]
    assert main(args) == 0
    assert "complete: 12/12 units recorded" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "out"), "--out", str(tmp_path / "report"), "--no-plot"]) == 0
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["comparisons"][0]["n_units"] == 12


def test_bad_input_exits_2_naming_the_file(tmp_path):
    a, b = write_sides(tmp_path, *distinct_answers(2, seeds=(0,)))
    b[0].write_text("[]")
    command = [sys.executable, "-m", "limit_foundry.judge", "run", "--a", str(a[0]), "--b", str(b[0])]
    command += ["--out", str(tmp_path / "out"), "--model", "m", "--base-url", "http://127.0.0.1:9/v1"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OPENAI_API_KEY": "k"})
    assert done.returncode == 2
    assert f"--b {b[0]}: holds no records" in done.stderr and "prompt_id 'p00' seed 0" in done.stderr
