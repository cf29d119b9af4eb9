"""Load the paper's base checkpoints (`mosaicml/mpt-7b`, `mosaicml/mpt-30b`) into LLM Foundry's own MPT.

LLM Foundry 0.22 refuses `mosaicml/mpt-*` through `hf_causal_lm` (llmfoundry.models.hf.hf_causal_lm), and its
MPT classes reject the hub config's `attn_config.prefix_lm`, an option they no longer implement. This module
adapts a hub-format config to what the current `MPTConfig` accepts, failing loudly on anything it cannot
translate faithfully, and loads the weights (safetensors or bin, single or sharded, one shard at a time).
`ComposerHubMPTCausalLM` is registered into LLM Foundry as the model `limit_hf_mpt`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from llmfoundry.models.mpt import ComposerMPTCausalLM, MPTConfig, MPTForCausalLM

from limit_foundry.errors import ConfigError, ModelLoadError
from limit_foundry.models.weights import load_weights_shard_by_shard, resolve_checkpoint_dir, weight_files

log = logging.getLogger(__name__)

# Keys of a hub config.json that describe packaging, not the network: dropped.
_PACKAGING_KEYS = {
    "architectures",
    "auto_map",
    "model_type",
    "transformers_version",
    "torch_dtype",
    "_name_or_path",
    "tokenizer_name",
    "verbose",
    "init_device",
    "use_cache",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
}
# Obsolete attention options and the only value of each that today's MPT reproduces.
_OBSOLETE_ATTN_OPTIONS = {"prefix_lm": False}
_ATTN_IMPLS = ("torch", "flash")


def _known_mpt_arguments() -> set[str]:
    import inspect

    return set(inspect.signature(MPTConfig.__init__).parameters) - {"self", "kwargs"}


def adapt_hub_mpt_config(
    hub_config: dict[str, Any],
    attn_impl: str = "torch",
    attn_uses_sequence_id: bool = False,
    source: str = "config.json",
) -> dict[str, Any]:
    """Translate a hub MPT `config.json` into keyword arguments for LLM Foundry's `MPTConfig`."""
    from llmfoundry.models.utils.config_defaults import attn_config_defaults

    if attn_impl not in _ATTN_IMPLS:
        raise ConfigError(f"attn_impl must be one of {_ATTN_IMPLS}, got {attn_impl!r}")
    model_type = hub_config.get("model_type", "mpt")
    if model_type != "mpt":
        raise ModelLoadError(f"{source}: model_type is {model_type!r}, not an MPT checkpoint")

    known = _known_mpt_arguments()
    adapted: dict[str, Any] = {}
    for key, value in hub_config.items():
        if key in _PACKAGING_KEYS:
            continue
        if key not in known:
            raise ModelLoadError(f"{source}: unknown MPT config key {key!r}; cannot adapt it")
        adapted[key] = value

    attn_config = dict(hub_config.get("attn_config") or {})
    for key, supported in _OBSOLETE_ATTN_OPTIONS.items():
        if key in attn_config:
            value = attn_config.pop(key)
            if value != supported:
                raise ModelLoadError(
                    f"{source}: attn_config.{key}={value!r} is not supported by LLM Foundry 0.22's MPT "
                    f"(only {supported!r} can be loaded faithfully)"
                )
    unknown_attn = sorted(set(attn_config) - set(attn_config_defaults))
    if unknown_attn:
        raise ModelLoadError(f"{source}: unknown attn_config keys {unknown_attn}; cannot adapt them")
    attn_config["attn_impl"] = attn_impl
    attn_config["attn_uses_sequence_id"] = attn_uses_sequence_id
    adapted["attn_config"] = attn_config

    if attn_config.get("alibi") or attn_config.get("rope"):
        # Hub MPTs set learned_pos_emb but never built a position table with ALiBi.
        adapted["learned_pos_emb"] = False
    if isinstance(adapted.get("init_config"), dict):
        adapted["init_config"] = {k: v for k, v in adapted["init_config"].items() if k != "verbose"}
    return adapted


def read_hub_config(checkpoint_dir: Path) -> dict[str, Any]:
    config_path = checkpoint_dir / "config.json"
    if not config_path.exists():
        raise ModelLoadError(f"{checkpoint_dir}: no config.json, not a hub-format MPT checkpoint")
    try:
        return json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ModelLoadError(f"{config_path}: not valid JSON ({err.msg})") from err


def load_weights_into(model: MPTForCausalLM, checkpoint_dir: Path) -> None:
    """Copy a hub checkpoint's tensors into `model`, one shard at a time; any missing or unexpected tensor
    is an error naming it."""
    tied = frozenset({"lm_head.weight"}) if model.config.tie_word_embeddings else frozenset()
    load_weights_shard_by_shard(model, weight_files(checkpoint_dir), ignore=tied)


def load_hub_mpt(
    name_or_path: str,
    attn_impl: str = "torch",
    attn_uses_sequence_id: bool = False,
    revision: str | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> MPTForCausalLM:
    """A hub-format MPT (hub id or local directory) as LLM Foundry's `MPTForCausalLM`, weights loaded."""
    checkpoint_dir = resolve_checkpoint_dir(name_or_path, revision)
    kwargs = adapt_hub_mpt_config(
        read_hub_config(checkpoint_dir), attn_impl, attn_uses_sequence_id, str(checkpoint_dir / "config.json")
    )
    kwargs.update(config_overrides or {})
    try:
        config = MPTConfig(**kwargs)
    except (ValueError, NotImplementedError) as err:  # MPTConfig's own validation of the values
        raise ModelLoadError(f"{checkpoint_dir / 'config.json'}: not a valid MPT config ({err})") from err
    model = MPTForCausalLM(config)
    load_weights_into(model, checkpoint_dir)
    return model


class ComposerHubMPTCausalLM(ComposerMPTCausalLM):
    """LLM Foundry model `limit_hf_mpt`: a hub-format MPT trained with LLM Foundry's own MPT code.

    YAML: `model: {name: limit_hf_mpt, pretrained_model_name_or_path: mosaicml/mpt-7b, attn_impl: torch}`.
    With `init_device: mixed` (FSDP), only rank 0 materialises and loads weights; FSDP broadcasts them.
    """

    def __init__(
        self,
        pretrained_model_name_or_path: str,
        tokenizer: Any = None,
        pretrained: bool = True,
        attn_impl: str = "torch",
        attn_uses_sequence_id: bool = False,
        revision: str | None = None,
        init_device: str = "cpu",
        config_overrides: dict[str, Any] | None = None,
        use_train_metrics: bool = True,
        additional_train_metrics: list | None = None,
        loss_fn: str | dict = "fused_crossentropy",
    ):
        checkpoint_dir = resolve_checkpoint_dir(pretrained_model_name_or_path, revision)
        kwargs = adapt_hub_mpt_config(
            read_hub_config(checkpoint_dir),
            attn_impl,
            attn_uses_sequence_id,
            str(checkpoint_dir / "config.json"),
        )
        kwargs.update(config_overrides or {})
        kwargs["init_device"] = init_device
        super().__init__(
            tokenizer=tokenizer,
            use_train_metrics=use_train_metrics,
            additional_train_metrics=additional_train_metrics,
            loss_fn=loss_fn,
            **kwargs,
        )
        on_meta = any(p.device.type == "meta" for p in self.model.parameters())
        if pretrained and not on_meta:
            load_weights_into(self.model, checkpoint_dir)
            log.info("loaded hub MPT weights from %s", checkpoint_dir)
