"""`limit-foundry config {show,validate}`: a training YAML exactly as LLM Foundry will receive it.

Also `python -m limit_foundry.config`. Exit status: 0 when shown or valid, 2 when the config is not.
"""

from __future__ import annotations

import argparse
import sys

from limit_foundry.cli.common import run_command
from limit_foundry.config import compose_config, resolved_dict, to_yaml
from limit_foundry.study.training import validated_config


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Show or validate a training config exactly as LLM Foundry will receive it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("show", "print the composed config (inheritance merged, overrides applied) as YAML"),
        ("validate", "run LLM Foundry's config validation and this package's path checks"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("config", help="a YAML under yamls/ (may use `inherit:`)")
        p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. variables.data_root=/data")
        if name == "show":
            p.add_argument(
                "--no-resolve",
                action="store_true",
                help="keep ${...} interpolations instead of resolving them (default: resolve)",
            )
        else:
            p.add_argument(
                "--no-path-checks",
                action="store_true",
                help="skip checks that data and model paths exist (default: check)",
            )
    return parser


def main(argv: list[str] | None = None, prog: str = "limit-foundry config") -> int:
    args = build_parser(prog).parse_args(argv)

    def show_or_validate() -> None:
        if args.command == "show":
            cfg = compose_config(args.config, args.overrides)
            if not args.no_resolve:
                resolved_dict(cfg)  # fail with the key named rather than print a broken config
            sys.stdout.write(to_yaml(cfg, resolve=not args.no_resolve))
        else:
            validated_config(args.config, args.overrides, check_paths=not args.no_path_checks)
            print(f"{args.config}: valid")

    return run_command(show_or_validate)


if __name__ == "__main__":
    sys.exit(main())
