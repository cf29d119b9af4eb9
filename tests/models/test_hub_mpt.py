"""The `limit_hf_mpt` loader: hub-format MPT checkpoints load into LLM Foundry's MPT unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from limit_foundry.errors import ModelLoadError
from limit_foundry.models.hub_mpt import (
    ComposerHubMPTCausalLM,
    adapt_hub_mpt_config,
    load_hub_mpt,
)
from limit_foundry.models.tiny import build_tiny_mpt, load_tiny_tokenizer


def hub_style_config(source_config: dict) -> dict:
    """What `mosaicml/mpt-7b`'s config.json looks like, with the tiny model's dimensions."""
    return {
        "architectures": ["MPTForCausalLM"],
        "attn_config": {
            "alibi": True,
            "alibi_bias_max": 8,
            "attn_impl": "triton",
            "attn_pdrop": 0,
            "attn_type": "multihead_attention",
            "attn_uses_sequence_id": False,
            "clip_qkv": None,
            "prefix_lm": False,
            "qk_ln": False,
            "softmax_scale": None,
        },
        "auto_map": {
            "AutoConfig": "configuration_mpt.MPTConfig",
            "AutoModelForCausalLM": "modeling_mpt.MPTForCausalLM",
        },
        "d_model": source_config["d_model"],
        "emb_pdrop": 0,
        "embedding_fraction": 1.0,
        "expansion_ratio": source_config["expansion_ratio"],
        "init_config": {
            "emb_init_std": None,
            "emb_init_uniform_lim": None,
            "fan_mode": "fan_in",
            "init_div_is_residual": True,
            "init_gain": 0,
            "init_nonlinearity": "relu",
            "init_std": 0.02,
            "name": "kaiming_normal_",
            "verbose": 0,
        },
        "init_device": "cpu",
        "learned_pos_emb": True,
        "logit_scale": None,
        "max_seq_len": source_config["max_seq_len"],
        "model_type": "mpt",
        "n_heads": source_config["n_heads"],
        "n_layers": source_config["n_layers"],
        "no_bias": True,
        "norm_type": "low_precision_layernorm",
        "resid_pdrop": 0,
        "tokenizer_name": "EleutherAI/gpt-neox-20b",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.28.1",
        "use_cache": False,
        "verbose": 0,
        "vocab_size": source_config["vocab_size"],
    }


def write_hub_checkpoint(directory: Path, weights: str) -> torch.nn.Module:
    """A tiny MPT saved in the hub's layout (`safetensors`, `bin`, `sharded-safetensors` or `sharded-bin`, three
    shards with an index like mpt-7b on the hub); returns the source model."""
    from safetensors.torch import save_file

    source = build_tiny_mpt(seed=7)
    directory.mkdir(parents=True)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    (directory / "config.json").write_text(json.dumps(hub_style_config(source.config.to_dict()), indent=2))
    fmt = weights.removeprefix("sharded-")
    save = save_file if fmt == "safetensors" else torch.save
    base = "model" if fmt == "safetensors" else "pytorch_model"
    if not weights.startswith("sharded-"):
        save(state, directory / f"{base}.{fmt}")
        return source
    names = sorted(state)
    weight_map = {}
    for i in range(3):
        part = names[i::3]
        shard = f"{base}-0000{i + 1}-of-00003.{fmt}"
        save({k: state[k] for k in part}, directory / shard)
        weight_map.update(dict.fromkeys(part, shard))
    (directory / f"{base}.{fmt}.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return source


@pytest.mark.parametrize("weights", ["safetensors", "bin", "sharded-safetensors", "sharded-bin"])
def test_loaded_weights_and_logits_equal_the_source(tmp_path: Path, weights: str) -> None:
    source = write_hub_checkpoint(tmp_path / "mpt", weights)
    loaded = load_hub_mpt(str(tmp_path / "mpt"), attn_impl="torch")
    assert loaded.config.attn_config["attn_impl"] == "torch"
    source_state, loaded_state = source.state_dict(), loaded.state_dict()
    assert source_state.keys() == loaded_state.keys()
    for name, tensor in source_state.items():
        assert torch.equal(tensor, loaded_state[name]), name
    input_ids = torch.randint(
        0, source.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        assert torch.equal(source(input_ids).logits, loaded.eval()(input_ids).logits)


def test_composer_model_loads_weights_through_the_registry(tmp_path: Path) -> None:
    from llmfoundry import registry

    source = write_hub_checkpoint(tmp_path / "mpt", "safetensors")
    cls = registry.models.get("limit_hf_mpt")
    assert cls is ComposerHubMPTCausalLM
    model = cls(
        pretrained_model_name_or_path=str(tmp_path / "mpt"),
        tokenizer=load_tiny_tokenizer(),
        loss_fn="torch_crossentropy",
        attn_uses_sequence_id=True,
    )
    assert model.model.config.attn_config["attn_uses_sequence_id"] is True
    for name, tensor in source.state_dict().items():
        assert torch.equal(tensor, model.model.state_dict()[name]), name


def test_prefix_lm_true_is_refused_with_the_key_named() -> None:
    config = hub_style_config(
        {
            "d_model": 64,
            "expansion_ratio": 4,
            "max_seq_len": 64,
            "n_heads": 4,
            "n_layers": 2,
            "vocab_size": 1024,
        }
    )
    config["attn_config"]["prefix_lm"] = True
    with pytest.raises(ModelLoadError, match="prefix_lm"):
        adapt_hub_mpt_config(config)


def test_unknown_keys_and_non_mpt_configs_are_refused(tmp_path: Path) -> None:
    base = hub_style_config(
        {
            "d_model": 64,
            "expansion_ratio": 4,
            "max_seq_len": 64,
            "n_heads": 4,
            "n_layers": 2,
            "vocab_size": 1024,
        }
    )
    with pytest.raises(ModelLoadError, match="'mystery_knob'"):
        adapt_hub_mpt_config({**base, "mystery_knob": 3})
    with pytest.raises(ModelLoadError, match="not an MPT"):
        adapt_hub_mpt_config({**base, "model_type": "llama"})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_hub_mpt(str(tmp_path / "empty"))


def test_missing_weights_are_named(tmp_path: Path) -> None:
    source_dir = tmp_path / "mpt"
    write_hub_checkpoint(source_dir, "safetensors")
    (source_dir / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="no weights"):
        load_hub_mpt(str(source_dir))


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_sharded_checkpoint_loads_shard_by_shard_equal_to_the_unsharded_one(tmp_path: Path, fmt: str) -> None:
    write_hub_checkpoint(tmp_path / "whole", fmt)
    write_hub_checkpoint(tmp_path / "sharded", f"sharded-{fmt}")
    assert len(list((tmp_path / "sharded").glob(f"*-of-00003.{fmt}"))) == 3
    whole = load_hub_mpt(str(tmp_path / "whole")).state_dict()
    sharded = load_hub_mpt(str(tmp_path / "sharded")).state_dict()
    assert whole.keys() == sharded.keys()
    for name, tensor in whole.items():
        assert torch.equal(tensor, sharded[name]), name


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_a_missing_or_extra_tensor_in_a_shard_is_named(tmp_path: Path, fmt: str) -> None:
    from safetensors.torch import load_file, save_file

    read = load_file if fmt == "safetensors" else torch.load
    save = save_file if fmt == "safetensors" else torch.save
    directory = tmp_path / "mpt"
    write_hub_checkpoint(directory, f"sharded-{fmt}")
    last = sorted(directory.glob(f"*-of-00003.{fmt}"))[-1]
    tensors = read(last)
    dropped = sorted(tensors)[0]
    save({k: v for k, v in tensors.items() if k != dropped}, last)
    with pytest.raises(ModelLoadError, match=rf"weights do not match the model \(missing {dropped}\)"):
        load_hub_mpt(str(directory))
    save({**tensors, "transformer.bogus.weight": torch.zeros(2)}, last)
    with pytest.raises(ModelLoadError, match=r"\(unexpected transformer\.bogus\.weight\)"):
        load_hub_mpt(str(directory))
