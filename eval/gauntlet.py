"""Thin entry point for `make gauntlet`: the same as `python -m limit_foundry.eval.gauntlet` (see --help)."""

from limit_foundry.eval.gauntlet import cli

if __name__ == "__main__":
    cli()
