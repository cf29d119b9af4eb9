"""`limit-foundry study {run,validate,status,stop} SPEC`: a whole study from one spec, stage by stage, and its
runs on the platform."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from limit_foundry.cli.common import run_command
from limit_foundry.study.platform_runs import TERMINAL, RunState
from limit_foundry.study.platform_status import study_platform_runs
from limit_foundry.study.runner import StudyOptions, run_study, validate_study
from limit_foundry.study.spec import STAGES, load_spec


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
    for name, text in (
        (
            "status",
            "each platform run and job of the study: its name and state (the study need not be running)",
        ),
        ("stop", "stop the study's platform runs and jobs that are still going (a killed study leaves them)"),
    ):
        platform = sub.add_parser(name, help=text)
        platform.add_argument("spec", type=Path, help="a study spec YAML")
        platform.add_argument("--out", type=Path, help="study directory (default: runs/<spec name>)")
    return parser


def main(argv: list[str] | None = None, prog: str = "limit-foundry study") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.command == "validate":
        return run_command(lambda: _validate(args.spec))
    if args.command in ("status", "stop"):
        return run_command(lambda: _platform_runs(args.spec, args.out, stop=args.command == "stop"))
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


def _platform_runs(spec_file: Path, out: Path | None, stop: bool) -> None:
    spec = load_spec(spec_file)
    runs = study_platform_runs(spec, out or Path("runs") / spec.name)
    if not runs:
        print(f"{spec_file}: no stage runs on the platform")
    for run in runs:
        status = run.status()
        if status is None:
            print(f"{run.step:<28} not yet submitted (its model is not trained)")
            continue
        line = f"{run.step:<28} {run.name}  {status.state.value}  {status.detail}".rstrip()
        if stop and status.state not in TERMINAL and status.state is not RunState.ABSENT:
            run.platform.stop(run.name)
            line += "  -> stopped"
        print(line)


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
