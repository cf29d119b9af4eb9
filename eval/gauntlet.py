"""`make gauntlet`'s script: the same as `limit-foundry gauntlet` (see --help)."""

import sys

from limit_foundry.cli.gauntlet import main

if __name__ == "__main__":
    sys.exit(main())
