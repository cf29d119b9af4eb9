"""Build LIMIT datasets: the same command as `limit-foundry data` (`--help` lists the options)."""

import sys

from limit_foundry.cli.data import main

if __name__ == "__main__":
    sys.exit(main(prog="build_datasets.py"))
