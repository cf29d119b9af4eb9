"""`limit-foundry report STUDY_DIR`: write a study's report.md and figures from its stage outputs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from limit_foundry.cli.common import run_command
from limit_foundry.study.report import build_report


def build_parser(prog: str = "limit-foundry report") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write STUDY_DIR/report.md (and figures/) from the outputs of a study's stages.",
    )
    parser.add_argument(
        "study_dir", type=Path, help="a study directory written by `python -m limit_foundry.study run`"
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "limit-foundry report") -> int:
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)

    def write() -> None:
        print(f"report: {build_report(args.study_dir)}")

    return run_command(write)
