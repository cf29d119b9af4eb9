"""`python -m limit_foundry.generate`: see `cli.py`."""

from limit_foundry.generate.cli import main

raise SystemExit(main())
