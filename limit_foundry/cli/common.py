"""What every subcommand shares: one top-level handler that turns errors into exit codes and messages."""

from __future__ import annotations

import sys
from collections.abc import Callable

from limit_foundry.errors import EXIT_INTERRUPTED, LimitFoundryError


def run_command(action: Callable[[], int | None], interrupted_hint: str = "") -> int:
    """Run one command: `error: ...` and its exit code for our errors, 130 on Ctrl-C, tracebacks only for bugs."""
    try:
        return action() or 0
    except LimitFoundryError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:  # a library may re-raise it saying what it saved and how to resume
        said = str(err) or interrupted_hint
        print(f"\ninterrupted{': ' + said if said else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
