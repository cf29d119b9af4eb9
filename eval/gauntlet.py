"""Thin entry point for `make gauntlet`: the same as `python -m limit_foundry.eval.gauntlet` (see --help)."""

import sys

from limit_foundry.eval.gauntlet import main

if __name__ == "__main__":
    sys.exit(main())
