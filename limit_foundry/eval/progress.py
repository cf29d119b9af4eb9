"""A Composer callback that shows Gauntlet eval progress and times the model's forward passes.

LLM Foundry's eval runs without a progress bar. Registered into `llmfoundry_callbacks` as
`limit_gauntlet_progress`: one tqdm bar per evaluator (`model [i/N] label`, counting batches), and
`forward_seconds`, the wall time spent inside the model (eval_forward, generation included), so a
run can report how much of its time went to loading, tokenization and copying instead.
"""

from __future__ import annotations

import time
from typing import Any

from composer.core import Callback, State
from composer.loggers import Logger


class GauntletProgress(Callback):
    def __init__(self, model_id: str = "model", evaluators: int = 0):
        self.model_id = model_id
        self.evaluators = evaluators
        self.done = 0
        self.forward_seconds = 0.0
        self._forward_started = 0.0
        self._bar: Any = None

    def eval_start(self, state: State, logger: Logger) -> None:
        from tqdm import tqdm

        self.done += 1
        total = state.dataloader_len.value if state.dataloader_len is not None else None
        of = f"/{self.evaluators}" if self.evaluators else ""
        self._bar = tqdm(
            total=total, desc=f"{self.model_id} [{self.done}{of}] {state.dataloader_label}", unit="batch"
        )

    def eval_before_forward(self, state: State, logger: Logger) -> None:
        self._forward_started = time.perf_counter()

    def eval_after_forward(self, state: State, logger: Logger) -> None:
        self.forward_seconds += time.perf_counter() - self._forward_started

    def eval_batch_end(self, state: State, logger: Logger) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def eval_end(self, state: State, logger: Logger) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
