"""Worker processes for a generation run split across processes (one per GPU, or shares of the CPU).

Each worker is a spawned process (CUDA cannot be used in a forked one) with a duplex pipe to the
coordinator; messages are small picklable tuples. A worker that ends, normally or killed, closes its end of
the pipe, so the coordinator hears of every exit, with its exit status, right after the worker's last
message. Leaving the `with` block stops every worker still running (SIGTERM, then SIGKILL), so an error in
one process stops the others. A worker whose coordinator has died exits at once (`exit_with_parent`), so
no orphan keeps appending to a progress log that a rerun writes too.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

STOP_GRACE_S = 10.0  # how long a stopped worker may take to exit before it is killed


@dataclass(frozen=True)
class WorkerExit:
    """A worker's end: its exit status (negative: the signal that killed it)."""

    status: int | None

    def describe(self) -> str:
        if self.status is not None and self.status < 0:
            return f"was killed by {signal.Signals(-self.status).name}"
        return f"exited with status {self.status}"


class WorkerProcesses:
    """`target(connection, *args)` in one spawned process per entry of `args`, worker k getting `args[k]`."""

    def __init__(self, target: Callable[..., None], args: Sequence[tuple[Any, ...]], name: str = "worker"):
        self._target = target
        self._args = list(args)
        self._name = name
        self._processes: list[multiprocessing.process.BaseProcess] = []
        self._connections: list[Connection] = []
        self._exited: set[int] = set()

    def __enter__(self) -> WorkerProcesses:
        context = multiprocessing.get_context("spawn")
        try:
            for shard, args in enumerate(self._args):
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=self._target, args=(theirs, *args), name=f"{self._name}-{shard}"
                )
                process.start()
                theirs.close()  # the worker holds the only other end: its exit closes the pipe
                self._processes.append(process)
                self._connections.append(ours)
        except BaseException:
            self.__exit__()
            raise
        return self

    def send_all(self, message: Any) -> None:
        """Send `message` to every worker still running (one that has just died is reported by `messages`)."""
        for shard, connection in enumerate(self._connections):
            if shard not in self._exited:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    connection.send(message)

    def messages(self) -> Iterator[tuple[int, Any]]:
        """(worker, message) as they come; (worker, WorkerExit) once each worker has ended; until all have."""
        running = {connection: shard for shard, connection in enumerate(self._connections)}
        while running:
            for connection in wait(list(running)):
                shard = running[connection]  # type: ignore[index]
                try:
                    message = connection.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):
                    del running[connection]  # type: ignore[arg-type]
                    self._processes[shard].join()
                    self._exited.add(shard)
                    yield shard, WorkerExit(self._processes[shard].exitcode)
                    continue
                yield shard, message

    def __exit__(self, *exc: object) -> None:
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        for process in self._processes:
            process.join(STOP_GRACE_S)
            if process.is_alive():
                process.kill()
                process.join()
        for connection in self._connections:
            connection.close()


def exit_with_parent() -> None:
    """In a worker: end this process as soon as the coordinator that started it is gone."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def ignore_interrupts() -> None:
    """In a worker: Ctrl-C reaches the whole process group; the coordinator alone handles it (and stops us)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
