"""`python -m limit_foundry.study run SPEC [--only STAGE] [--dry-run] [--out DIR]`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from limit_foundry.config import ConfigError
from limit_foundry.study.runner import StudyError, preflight, run_study
from limit_foundry.study.spec import STAGES, SpecError, load_spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m limit_foundry.study",
        description="Run a LIMIT-style study: data, train, gauntlet, generate, judge, report.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the study's stages in order, skipping complete and current steps")
    run.add_argument("spec", help="a study spec YAML, e.g. yamls/studies/demo.yaml")
    run.add_argument(
        "--only",
        action="append",
        choices=STAGES,
        help="run only this stage (repeatable; default: every stage, in order)",
    )
    run.add_argument("--out", type=Path, help="study directory (default: runs/<spec name>)")
    run.add_argument("--dry-run", action="store_true", help="validate, then print each step's exact command")
    check = sub.add_parser("validate", help="validate a spec and the credentials its stages need")
    check.add_argument("spec", help="a study spec YAML")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = load_spec(args.spec)
        if args.command == "validate":
            preflight(spec, STAGES)
            print(f"{args.spec}: valid")
            return 0
        stages = tuple(s for s in STAGES if s in args.only) if args.only else STAGES
        out = args.out or Path("runs") / spec.name
        started = time.monotonic()
        timings = run_study(spec, out, stages, dry_run=args.dry_run)
    except (SpecError, ConfigError, StudyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if timings:
        per_stage = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in timings.items())
        print(f"study {spec.name} done in {time.monotonic() - started:.0f} s ({per_stage})")
        if (out / "report.md").is_file():
            print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
