"""Train with LLM Foundry: `composer train.py yamls/<run>.yaml [key=value ...]` (the same as `limit-foundry train`)."""

import sys

from limit_foundry.cli.train import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="train.py"))
