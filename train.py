"""Train with LLM Foundry: `composer train.py yamls/<run>.yaml [key=value ...]`.

Composes the YAML (inheritance and overrides, see limit_foundry/config.py), validates it before
anything is written, then hands it to LLM Foundry's own trainer.
"""

import sys

from limit_foundry.train import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
