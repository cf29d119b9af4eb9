"""`python -m limit_foundry.submit CONFIG --cluster C --gpus 8 [--dry-run]`: train a config on the MosaicML platform.

The config is composed and validated here first (without local path checks: data and checkpoints live on
the platform), so a bad config fails on the laptop, not after the run is queued.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from limit_foundry.config import ConfigError, compose_config, resolved_dict
from limit_foundry.study.platform import (
    DEFAULT_IMAGE,
    PlatformError,
    PlatformTarget,
    build_run,
    resolve_source_repo,
    run_yaml,
    submit_run,
    to_run_config,
    uncommitted_changes,
)

REPO_ROOT = Path(__file__).resolve().parent.parent


def _env_pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--env wants NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m limit_foundry.submit",
        description="Build an mcli run from a composed training config and submit it (or print it).",
    )
    parser.add_argument("config", help="a training YAML, e.g. yamls/mpt30b_mix.yaml (may use `inherit:`)")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="key=value overrides applied before submission, e.g. variables.save_root=s3://bucket/runs",
    )
    parser.add_argument("--cluster", required=True, help="platform cluster name (see `mcli get clusters`)")
    parser.add_argument(
        "--gpus", type=int, required=True, help="number of GPUs, e.g. 8 (the paper's 8x A100)"
    )
    parser.add_argument("--gpu-type", default=None, help="GPU type, e.g. a100_80gb (default: the cluster's)")
    parser.add_argument(
        "--nodes", type=int, default=None, help="number of nodes (default: as many as --gpus needs)"
    )
    parser.add_argument("--image", default=DEFAULT_IMAGE, help=f"Docker image (default: {DEFAULT_IMAGE})")
    parser.add_argument(
        "--repo",
        default=None,
        help="this repository on GitHub as owner/name (default: from `git remote get-url origin`)",
    )
    parser.add_argument("--commit", default=None, help="commit to run (default: the checkout's HEAD)")
    parser.add_argument(
        "--priority", default=None, help="scheduling priority: low or lowest (default: platform's)"
    )
    parser.add_argument("--max-retries", type=int, default=0, help="retries after failure (default: 0)")
    parser.add_argument(
        "--preemptible", action="store_true", help="allow preemption (default: not preemptible)"
    )
    parser.add_argument(
        "--no-build-data",
        action="store_true",
        help="do not build the run's dataset before training (default: build <data_root>/<recipe> on the run)",
    )
    parser.add_argument(
        "--env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment variable for the run (repeatable; credentials are refused: use mcli secrets)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the run YAML and submit nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        parameters = resolved_dict(compose_config(args.config, args.overrides))
        source = resolve_source_repo(REPO_ROOT, args.repo, args.commit)
        target = PlatformTarget(
            cluster=args.cluster,
            gpus=args.gpus,
            gpu_type=args.gpu_type,
            nodes=args.nodes,
            image=args.image,
            priority=args.priority,
            max_retries=args.max_retries,
            preemptible=args.preemptible,
            build_data=not args.no_build_data,
            env=dict(args.env),
        )
        run = build_run(parameters, target, source)
        to_run_config(run)  # mcli's own validation, also on --dry-run
        if args.commit is None and uncommitted_changes(REPO_ROOT):
            print(
                f"warning: uncommitted changes in {REPO_ROOT}; the run uses commit {source.commit}",
                file=sys.stderr,
            )
        if args.dry_run:
            sys.stdout.write(run_yaml(run))
            return 0
        created = submit_run(run)
    except (ConfigError, PlatformError) as err:
        print(f"error: {args.config}: {err}", file=sys.stderr)
        return 2
    print(f"submitted run {getattr(created, 'name', created)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
