"""Dispatch under a signal: every answer the backend returned is recorded before the interrupt surfaces."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from limit_foundry.judge.cost import Budget
from limit_foundry.judge.dispatch import Job, dispatch

CONCURRENCY = 4


class SlowBackend:
    """Answers every request after a short delay and counts the answers (what a real server bills)."""

    name = provider = "slow"

    def __init__(self) -> None:
        self.answered: list[int] = []
        self._lock = threading.Lock()

    def complete(self, body: dict[str, Any], stop: threading.Event) -> Any:
        time.sleep(0.05)
        with self._lock:
            self.answered.append(body["n"])
        return body["n"]

    def preflight(self, stop: threading.Event) -> str:
        return "ok"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_recording_loses_no_answer(signum):
    backend = SlowBackend()
    jobs = [Job(unit=None, body={"n": n}, request_key=str(n), estimate=0.0) for n in range(40)]
    recorded: list[int] = []

    def on_result(job: Job, outcome: Any) -> float:
        if not recorded:
            os.kill(os.getpid(), signum)  # delivered in the middle of recording the first answer
        time.sleep(0.01)
        recorded.append(outcome)
        return 0.0

    previous = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt):
        dispatch(backend, jobs, CONCURRENCY, Budget(None), threading.Event(), on_result)
    assert sorted(recorded) == sorted(backend.answered)
    assert len(backend.answered) <= CONCURRENCY + 1, "no new request after the signal"
    assert signal.getsignal(signum) is previous, "the caller's handler is restored"


def test_without_a_signal_every_job_is_recorded_once():
    backend = SlowBackend()
    jobs = [Job(unit=None, body={"n": n}, request_key=str(n), estimate=0.0) for n in range(12)]
    recorded: list[int] = []
    left = dispatch(
        backend, jobs, CONCURRENCY, Budget(None), threading.Event(), lambda j, o: recorded.append(o) or 0.0
    )
    assert left == [] and sorted(recorded) == list(range(12))
