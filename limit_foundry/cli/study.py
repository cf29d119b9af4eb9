"""`limit-foundry study {run,validate} SPEC`: a whole study from one spec, stage by stage."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from limit_foundry.cli.common import run_command
from limit_foundry.study.runner import StudyOptions, run_study, validate_study
from limit_foundry.study.spec import STAGES


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a LIMIT-style study: data, train, gauntlet, generate, judge, report.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the study's stages in order, skipping complete and current steps")
    run.add_argument("spec", type=Path, help="a study spec YAML, e.g. yamls/studies/demo.yaml")
    run.add_argument(
        "--only",
        action="append",
        choices=STAGES,
        help="run only this stage (repeatable; default: every stage, in order)",
    )
    run.add_argument("--out", type=Path, help="study directory (default: runs/<spec name>)")
    run.add_argument("--dry-run", action="store_true", help="validate, then print each step's exact command")
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="submit again the platform runs and jobs of this study that failed or were stopped (by default a "
        "rerun reports them with their last log lines and submits nothing twice)",
    )
    check = sub.add_parser("validate", help="validate a spec and the credentials its stages need")
    check.add_argument("spec", type=Path, help="a study spec YAML")
    return parser


def main(argv: list[str] | None = None, prog: str = "limit-foundry study") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.command == "validate":
        return run_command(lambda: _validate(args.spec))
    options = StudyOptions(
        spec=args.spec,
        stages=tuple(args.only) if args.only else STAGES,
        out=args.out,
        dry_run=args.dry_run,
        retry_failed=args.retry_failed,
    )
    return run_command(
        lambda: _run(options),
        interrupted_hint="finished steps are kept; rerun the same command: they are skipped and the "
        "interrupted step resumes",
    )


def _validate(spec: Path) -> None:
    validate_study(spec)
    print(f"{spec}: valid")


def _run(options: StudyOptions) -> None:
    started = time.monotonic()
    done = run_study(options)
    if done.timings:
        per_stage = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in done.timings.items())
        print(f"study {done.spec.name} done in {time.monotonic() - started:.0f} s ({per_stage})")
        if (done.out / "report.md").is_file():
            print(f"report: {done.out / 'report.md'}")
