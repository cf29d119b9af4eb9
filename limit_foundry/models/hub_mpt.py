"""Load the paper's base checkpoints (`mosaicml/mpt-7b`, `mosaicml/mpt-30b`) into LLM Foundry's own MPT.

LLM Foundry 0.22 refuses `mosaicml/mpt-*` through `hf_causal_lm`, and its MPT classes reject the
hub config's `attn_config.prefix_lm` (LIMIT_FACTS §4). This module adapts a hub-format config to
what the current `MPTConfig` accepts, failing loudly on anything it cannot translate faithfully,
and loads the weights (safetensors or bin, single or sharded). `ComposerHubMPTCausalLM` is
registered into LLM Foundry as the model `limit_hf_mpt`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from llmfoundry.models.mpt import ComposerMPTCausalLM, MPTConfig, MPTForCausalLM

from limit_foundry.models.checkpoints import index_shards

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


class HubMPTConfigError(ValueError):
    """A hub MPT config that cannot be translated without changing what the model computes."""


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
        raise HubMPTConfigError(f"attn_impl must be one of {_ATTN_IMPLS}, got {attn_impl!r}")
    model_type = hub_config.get("model_type", "mpt")
    if model_type != "mpt":
        raise HubMPTConfigError(f"{source}: model_type is {model_type!r}, not an MPT checkpoint")

    known = _known_mpt_arguments()
    adapted: dict[str, Any] = {}
    for key, value in hub_config.items():
        if key in _PACKAGING_KEYS:
            continue
        if key not in known:
            raise HubMPTConfigError(f"{source}: unknown MPT config key {key!r}; cannot adapt it")
        adapted[key] = value

    attn_config = dict(hub_config.get("attn_config") or {})
    for key, supported in _OBSOLETE_ATTN_OPTIONS.items():
        if key in attn_config:
            value = attn_config.pop(key)
            if value != supported:
                raise HubMPTConfigError(
                    f"{source}: attn_config.{key}={value!r} is not supported by LLM Foundry 0.22's MPT "
                    f"(only {supported!r} can be loaded faithfully)"
                )
    unknown_attn = sorted(set(attn_config) - set(attn_config_defaults))
    if unknown_attn:
        raise HubMPTConfigError(f"{source}: unknown attn_config keys {unknown_attn}; cannot adapt them")
    attn_config["attn_impl"] = attn_impl
    attn_config["attn_uses_sequence_id"] = attn_uses_sequence_id
    adapted["attn_config"] = attn_config

    if attn_config.get("alibi") or attn_config.get("rope"):
        # Hub MPTs set learned_pos_emb but never built a position table with ALiBi.
        adapted["learned_pos_emb"] = False
    if isinstance(adapted.get("init_config"), dict):
        adapted["init_config"] = {k: v for k, v in adapted["init_config"].items() if k != "verbose"}
    return adapted


def resolve_checkpoint_dir(name_or_path: str, revision: str | None = None) -> Path:
    """A local directory as is; a hub id downloaded (config and weights only) with the user's HF token."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists() or name_or_path.startswith((".", "/")):
        raise FileNotFoundError(f"{name_or_path}: not a checkpoint directory")
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                name_or_path,
                revision=revision,
                allow_patterns=["*.json", "*.safetensors", "*.bin"],
                token=os.environ.get("HF_TOKEN") or None,
            )
        )
    except Exception as err:  # the hub client raises many types; all mean "not available here"
        raise FileNotFoundError(
            f"could not fetch {name_or_path!r} from the Hugging Face hub ({type(err).__name__}: {err}). "
            "Pass a local directory holding config.json and the weights instead."
        ) from err


def read_hub_config(checkpoint_dir: Path) -> dict[str, Any]:
    config_path = checkpoint_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{checkpoint_dir}: no config.json, not a hub-format MPT checkpoint")
    try:
        return json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise HubMPTConfigError(f"{config_path}: not valid JSON ({err.msg})") from err


def _weight_files(checkpoint_dir: Path) -> list[Path]:
    for single, index in (
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        if (checkpoint_dir / single).exists():
            return [checkpoint_dir / single]
        if (checkpoint_dir / index).exists():
            return index_shards(checkpoint_dir / index)
    raise FileNotFoundError(
        f"{checkpoint_dir}: no weights (model.safetensors, pytorch_model.bin or a sharded index)"
    )


def load_hub_state_dict(checkpoint_dir: Path) -> dict[str, Any]:
    import torch

    state: dict[str, Any] = {}
    for file in _weight_files(checkpoint_dir):
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state.update(load_file(file))
        else:
            state.update(torch.load(file, map_location="cpu", weights_only=True))
    return state


def load_weights_into(model: MPTForCausalLM, checkpoint_dir: Path) -> None:
    """Copy a hub checkpoint's tensors into `model`; any missing or unexpected tensor is an error."""
    state = load_hub_state_dict(checkpoint_dir)
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise HubMPTConfigError(
            f"{checkpoint_dir}: weights do not match the adapted MPT "
            f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})"
        )


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
    model = MPTForCausalLM(MPTConfig(**kwargs))
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
