"""`python -m limit_foundry.generate`: the same command as `limit-foundry generate`."""

import runpy
import sys

sys.argv[1:1] = ["generate"]
runpy.run_module("limit_foundry.cli", run_name="__main__")
