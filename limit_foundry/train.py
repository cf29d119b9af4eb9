"""The body of the repo-root `train.py`: compose, validate, then LLM Foundry's `train`."""

from __future__ import annotations

import sys

USAGE = "usage: composer train.py CONFIG.yaml [key=value ...]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        print("Trains with LLM Foundry after composing `inherit:` chains and validating the config.")
        return 0 if argv else 2
    from limit_foundry.config import ConfigError, compose_config, validate_config

    try:
        cfg = compose_config(argv[0], argv[1:])
        validate_config(cfg)
    except ConfigError as err:
        print(f"error: {argv[0]}: {err}", file=sys.stderr)
        return 2
    from llmfoundry.command_utils import train

    train(cfg)
    return 0
