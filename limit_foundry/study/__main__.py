"""`python -m limit_foundry.study`: kept for compatibility; the same as `limit-foundry study`."""

import runpy
import sys

sys.argv[1:1] = ["study"]
runpy.run_module("limit_foundry.cli", run_name="__main__")
