"""`python -m limit_foundry.judge {run,report,calibrate}`: the pairwise LLM judge's command line."""

from __future__ import annotations

import argparse
import sys

from limit_foundry.judge import calibrate, report, run_cli

# (name, module with HELP, DESCRIPTION and add_arguments, the function that runs the parsed arguments)
SUBCOMMANDS = (
    ("run", run_cli, run_cli.run_command),
    ("report", report, report.run_report),
    ("calibrate", calibrate, calibrate.run_calibrate),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m limit_foundry.judge",
        description="Pairwise LLM judge for instruction-tuning studies: run judgments (resumable, cached, "
        "cost-capped), report win rates with confidence intervals, calibrate a judge against reference verdicts.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="{run,report,calibrate}")
    for name, module, execute in SUBCOMMANDS:
        sub = subparsers.add_parser(name, help=module.HELP, description=module.DESCRIPTION)
        module.add_arguments(sub)
        sub.set_defaults(func=execute)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
