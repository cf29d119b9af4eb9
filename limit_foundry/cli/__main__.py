"""`python -m limit_foundry.cli`: the same as the `limit-foundry` console script."""

import sys

from limit_foundry.cli import main

sys.exit(main())
