"""`limit-foundry judge` (and `python -m limit_foundry.judge`): one parser for run, report, calibrate and reanalyze;
clear exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from limit_foundry.cli import main as limit_foundry
from limit_foundry.cli.judge import build_parser


def _subcommand_help(name: str) -> str:
    return build_parser()._subparsers._group_actions[0].choices[name].format_help()


def test_help_lists_every_subcommand_and_explains_run_options(capsys):
    help_text = build_parser().format_help()
    assert "{run,report,calibrate,reanalyze}" in help_text
    run_help = _subcommand_help("run")
    for option in ("--a FILE", "--order", "--batch", "--max-cost", "--dry-run", "--cache-dir", "default"):
        assert option in run_help
    assert "--max-failure-rate" in _subcommand_help("report")
    assert "--min-kappa" in _subcommand_help("calibrate")
    for name in ("report", "reanalyze"):  # the length-controlled win rate's options
        assert "--lc-resamples" in _subcommand_help(name) and "--instruction-difficulty" in _subcommand_help(
            name
        )
    assert "<comparison>_seed<k>.json" in _subcommand_help("reanalyze")


def test_limit_foundry_judge_help(capsys):
    with pytest.raises(SystemExit) as done:
        limit_foundry(["judge", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: limit-foundry judge") and "{run,report,calibrate,reanalyze}" in out


def test_python_m_limit_foundry_judge_runs_the_same_command(tmp_path: Path) -> None:
    """The compatibility form hands over to `limit-foundry judge`; bad input exits 2 naming the file."""
    answers = [{"instruction": "Q?", "output": "x", "generator": "a", "prompt_id": "p00", "seed": 0}]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(answers))
    b.write_text("[]")
    command = [sys.executable, "-m", "limit_foundry.judge", "run", "--a", str(a), "--b", str(b)]
    command += ["--out", str(tmp_path / "out"), "--model", "m", "--base-url", "http://127.0.0.1:9/v1"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OPENAI_API_KEY": "k"})
    assert done.returncode == 2
    assert f"--b {b}: holds no records" in done.stderr and "prompt_id 'p00' seed 0" in done.stderr
    help_done = subprocess.run(
        [sys.executable, "-m", "limit_foundry.judge", "--help"], capture_output=True, text=True
    )
    assert help_done.returncode == 0 and "{run,report,calibrate,reanalyze}" in help_done.stdout
