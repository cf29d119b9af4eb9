"""Shared test fixtures: repository paths, the real data in ../shared (skipped clearly when absent), and the
tiny models and prompt files the generation library and its command line are tested with."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = (REPO_ROOT.parent / "shared").resolve()

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the repo (real data for tests); tests that need it skip when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"real data absent: {SHARED_DIR} does not exist")
    return SHARED_DIR


@pytest.fixture(scope="session")
def tiny_hub_mpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MPT saved as an HF directory; loads through `limit_hf_mpt` like a hub checkpoint."""
    from limit_foundry.models.tiny import build_tiny_mpt

    directory = tmp_path_factory.mktemp("tiny_hub_mpt")
    build_tiny_mpt(directory)
    return directory


QUESTIONS = [
    "What is Python?",
    "Name three colors.",
    "Write a haiku about autumn leaves falling slowly from the old maple tree.",
    "Why?",
    "Explain, step by step, how a bicycle gear system trades speed for force on a steep hill.",
    "List two prime numbers.",
]


@pytest.fixture
def one_cpu_thread():
    """One torch thread during these tests: on a 2-core machine shared with other jobs, two threads
    spin against each other and small-model generation runs tens of times slower. Restored after."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
