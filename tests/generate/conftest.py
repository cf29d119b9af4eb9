"""Generation tests run with one torch thread (see `one_cpu_thread` in tests/conftest.py) and a tiny MPT."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def one_thread_each(one_cpu_thread):
    """Every generation test runs on one torch thread."""


@pytest.fixture(scope="session")
def tiny_mpt_dir(tmp_path_factory) -> Path:
    """LLM Foundry's own MPT saved as an HF directory with the tiny tokenizer (what hf_checkpointer writes)."""
    from limit_foundry.models.tiny import build_tiny_mpt

    out = tmp_path_factory.mktemp("tiny_mpt") / "model"
    build_tiny_mpt(out)
    return out
