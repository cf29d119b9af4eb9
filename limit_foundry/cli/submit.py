"""`limit-foundry submit CONFIG --cluster C --gpus 8 [key=value ...] [--dry-run]`: train a config on the platform.

The run clones the git checkout of your project (the current directory, or `--project-dir`) at its HEAD
commit (or `--commit`); push that commit first. Overrides may come before or after the options. The
pre-flight (batch arithmetic, steps, tokens, GPU-hours) is printed before anything is submitted; on a dry
run as `#` comments above the run YAML, which stays valid YAML. `--follow` waits for the run (named from its
content, so submitting the same work again attaches to it); `--local DIR` runs the same run YAML on this machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from limit_foundry.cli.common import run_command
from limit_foundry.study.platform import DEFAULT_IMAGE, PlatformTarget, SubmitOptions
from limit_foundry.study.platform_runs import submit


def _env_pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--env wants NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    return name, value


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Build an mcli run from a composed training config and submit it (or print it).",
    )
    parser.add_argument("config", help="a training YAML, e.g. yamls/mpt30b_mix.yaml (may use `inherit:`)")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="key=value overrides applied before submission (before or after the options), "
        "e.g. variables.save_root=s3://bucket/runs",
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
        "--project-dir",
        type=Path,
        default=Path("."),
        help="the git checkout of your project that the run clones (default: the current directory)",
    )
    parser.add_argument(
        "--repo",
        default=None,
        help="your project on GitHub as owner/name (default: from `git remote get-url origin` in --project-dir)",
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
    parser.add_argument(
        "--wandb",
        default=None,
        metavar="PROJECT[/ENTITY]",
        help="log to Weights & Biases (LLM Foundry's wandb logger; with ENTITY also mcli's wandb integration); "
        "store the key with `mcli create secret env WANDB_API_KEY=...`",
    )
    parser.add_argument(
        "--mlflow",
        default=None,
        metavar="EXPERIMENT",
        help="log to MLflow (LLM Foundry's mlflow logger; MLFLOW_EXPERIMENT_NAME in the run); the tracking "
        "server comes from DATABRICKS_HOST/DATABRICKS_TOKEN secrets or --env MLFLOW_TRACKING_URI=...",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the pre-flight and the run YAML, and submit nothing"
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="wait for the run, printing its status as it changes; exit 0 once it completes, else print its "
        "last log lines and exit 2 (the run is named from its content, as with --name-prefix)",
    )
    parser.add_argument(
        "--name-prefix",
        default=None,
        metavar="PREFIX",
        help="name the run PREFIX-<8 hex of its content>: submitting the same work again attaches to the run "
        "of that name (still going or finished) instead of submitting it twice (default with --follow: the "
        "config's run_name)",
    )
    parser.add_argument(
        "--local",
        type=Path,
        default=None,
        metavar="DIR",
        help="run on this machine instead of the MosaicML platform: the same run YAML (its command, "
        "parameters and environment) in a detached process, in the current checkout and environment; "
        "state and log under DIR/<run name>",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --follow or --name-prefix: submit again a run of the derived name that failed or was stopped "
        "(by default it is reported with its last log lines, not submitted twice)",
    )
    parser.add_argument(
        "--poll", type=float, default=10.0, help="seconds between status checks with --follow (default: 10)"
    )
    return parser


def main(argv: list[str] | None = None, prog: str = "limit-foundry submit") -> int:
    args = build_parser(prog).parse_intermixed_args(argv)
    options = SubmitOptions(
        config=args.config,
        overrides=args.overrides,
        target=PlatformTarget(
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
            wandb=args.wandb,
            mlflow=args.mlflow,
        ),
        project_dir=args.project_dir,
        repo=args.repo,
        commit=args.commit,
        dry_run=args.dry_run,
        name_prefix=args.name_prefix,
        follow=args.follow,
        local_root=args.local,
        poll_s=args.poll,
        retry_failed=args.retry_failed,
    )

    def action() -> int:
        submission = submit(options)  # prints the pre-flight and what it submitted, unless dry
        if options.dry_run:
            for warning in submission.warnings:
                print(f"warning: {warning}", file=sys.stderr)
            print("\n".join(f"# {line}" for line in submission.arithmetic.lines()))
            sys.stdout.write(submission.run_yaml)
        return 0

    return run_command(action)
