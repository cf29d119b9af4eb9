"""`python -m limit_foundry.judge ...`: the same as `limit-foundry judge ...`."""

import runpy
import sys

sys.argv[1:1] = ["judge"]
runpy.run_module("limit_foundry.cli", run_name="__main__")
