"""Fixtures for the Gauntlet tests: the real benchmark files in ../shared and small model directories."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def gauntlet_data_dir(shared_dir: Path) -> Path:
    path = shared_dir / "data" / "gauntlet" / "local_data"
    if not path.is_dir():
        pytest.skip(f"real Gauntlet data absent: {path}")
    return path


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 with the committed tiny tokenizer: an `hf_causal_lm` (non-MPT) checkpoint."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from limit_foundry.models.tiny import load_tiny_tokenizer

    tokenizer = load_tiny_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=512,
        n_embd=32,
        n_layer=2,
        n_head=4,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    directory = tmp_path_factory.mktemp("tiny_gpt2")
    GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_composer_checkpoint(tiny_hub_mpt_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny MPT's weights as a Composer checkpoint (`state.model`, `model.` prefix), like LLM Foundry saves."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(tiny_hub_mpt_dir / "model.safetensors")
    path = tmp_path_factory.mktemp("composer") / "tiny-ep1.pt"
    torch.save({"state": {"model": {f"model.{k}": v for k, v in weights.items()}}}, path)
    return path
