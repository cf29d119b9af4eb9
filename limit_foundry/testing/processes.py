"""What /proc says about processes, for tests that check a server or a run left nothing behind (Linux only)."""

from __future__ import annotations

import os
from pathlib import Path


def _stats() -> list[tuple[int, list[str]]]:
    """(pid, the fields after the command name) of every process; state first, then ppid, then pgid."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            found.append((int(stat.parent.name), stat.read_text().rsplit(")", 1)[1].split()))
        except OSError:  # ended while we looked
            continue
    return found


def children_of(pid: int) -> list[int]:
    return [child for child, fields in _stats() if int(fields[1]) == pid]


def live_group_members(pgid: int) -> list[int]:
    """The processes of a process group that still run (zombies left for init to reap do not count)."""
    return [pid for pid, fields in _stats() if int(fields[2]) == pgid and fields[0] != "Z"]


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def running_with(fragment: str) -> list[int]:
    """Live processes (this one excepted) whose command line holds `fragment`."""
    me = os.getpid()
    return [
        pid for pid, fields in _stats() if pid != me and fields[0] != "Z" and fragment in command_line(pid)
    ]
