"""Fixtures for the generation tests: tiny models on disk (built once per session) and prompt files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

QUESTIONS = [
    "What is Python?",
    "Name three colors.",
    "Write a haiku about autumn leaves falling slowly from the old maple tree.",
    "Why?",
    "Explain, step by step, how a bicycle gear system trades speed for force on a steep hill.",
    "List two prime numbers.",
]


@pytest.fixture(autouse=True)
def one_cpu_thread():
    """One torch thread during these tests: on a 2-core machine shared with other jobs, two threads
    spin against each other and small-model generation runs tens of times slower. Restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_mpt_dir(tmp_path_factory) -> Path:
    """LLM Foundry's own MPT saved as an HF directory with the tiny tokenizer (what hf_checkpointer writes)."""
    from limit_foundry.models.tiny import build_tiny_mpt

    out = tmp_path_factory.mktemp("tiny_mpt") / "model"
    build_tiny_mpt(out)
    return out


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    """A tiny random Llama (a non-MPT transformers model) with the tiny tokenizer; no LLM Foundry needed."""
    from limit_foundry.models.tiny import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny_llama") / "model")


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def write_jsonl():
    """`write_jsonl(path, rows)`: a JSONL file of `rows`."""
    return _write_jsonl


@pytest.fixture
def watch_batches(monkeypatch):
    """`watch_batches(fail_on_call=None)`: count the run's batch calls (their sizes), optionally raising
    KeyboardInterrupt on one of them, as a kill between two batches would stop the run."""
    import limit_foundry.generate.run as generation_run

    def watch(fail_on_call: int | None = None) -> list[int]:
        calls: list[int] = []
        real = generation_run.generate_batch

        def counting(model, tokenizer, batch, settings, eos_ids):
            calls.append(len(batch))
            if fail_on_call is not None and len(calls) == fail_on_call:
                raise KeyboardInterrupt("killed")
            return real(model, tokenizer, batch, settings, eos_ids)

        monkeypatch.setattr(generation_run, "generate_batch", counting)
        return calls

    return watch


@pytest.fixture
def questions() -> list[str]:
    """Questions of clearly different lengths, so batched rows get left padding."""
    return list(QUESTIONS)


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    return _write_jsonl(tmp_path / "questions.jsonl", [{"instruction": q} for q in QUESTIONS])
