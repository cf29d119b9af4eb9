"""Packing without cross-talk: the opt-in check, and the padding-waste measure the benchmarks use.

With `packing_ratio`, LLM Foundry packs several samples into one max_seq_len row and marks them
apart only with `sequence_id` (LLM Foundry 0.22, `llmfoundry.data.packing`). MPT honours it when
`attn_uses_sequence_id: true` (each sample attends only to itself); HF models drop it silently,
so packed samples would attend to each other. `validate_packing` refuses those configurations
before training starts; it runs with every training-config validation
(`limit_foundry.data.dataloader.validate_training_config`). Loss masking is unchanged by packing: the
labels are built per sample (response tokens only) before the samples are packed.

Opt in with `yamls/overrides/packing.yaml` (paper models, `limit_hf_mpt`) or
`yamls/overrides/packing_mpt.yaml` (`mpt_causal_lm`, e.g. the tiny configs). They set
`packing_ratio: fit`, which the `limit_finetuning` loader resolves from the split's real token
lengths: the ratio whose packed rows are filled to FIT_FILL on average (LLM Foundry's `auto`
profiles a coarse grid of ratios and can leave twice the padding; bench/bench_data.py compares them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from limit_foundry.errors import ConfigError

FIT = "fit"
FIT_FILL = 0.97  # target share of each packed row holding tokens; the rest absorbs length variance

# Model names whose attention honours `sequence_id`, and where their switch lives in `model:`.
SEQUENCE_ID_SWITCH: dict[str, tuple[str, ...]] = {
    "mpt_causal_lm": ("attn_config", "attn_uses_sequence_id"),
    "limit_hf_mpt": ("attn_uses_sequence_id",),
}


def packing_enabled(dataset_cfg: dict[str, Any]) -> bool:
    ratio = dataset_cfg.get("packing_ratio")
    return ratio is not None and ratio != 1 and ratio != 1.0


def loader_configs(cfg: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(config key, loader config) of the train loader and every eval loader."""
    loaders = [("train_loader", cfg.get("train_loader") or {})]
    if cfg.get("eval_loader"):
        loaders.append(("eval_loader", cfg["eval_loader"]))
    for i, loader in enumerate(cfg.get("eval_loaders") or []):
        loaders.append((f"eval_loaders[{i}]", loader))
    return loaders


def _switch_value(model: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = model
    for key in path:
        node = node.get(key) if isinstance(node, dict) else None
    return node


def validate_packing(cfg: dict[str, Any]) -> None:
    """Refuse packing unless the model keeps packed samples apart (MPT with attn_uses_sequence_id).

    `cfg` is the resolved training config (a plain dict). Raises ConfigError naming the key.
    """
    packed = [
        (key, loader) for key, loader in loader_configs(cfg) if packing_enabled(loader.get("dataset") or {})
    ]
    if not packed:
        return
    key, loader = packed[0]
    where = f"{key}.dataset.packing_ratio={loader['dataset']['packing_ratio']!r}"
    model = cfg.get("model") or {}
    name = model.get("name")
    if name not in SEQUENCE_ID_SWITCH:
        raise ConfigError(
            f"{where} packs several samples into one sequence, kept apart only by `sequence_id`, but model "
            f"{name!r} ignores sequence_id (HF models let packed samples attend to each other). Use an MPT "
            f"model ({', '.join(sorted(SEQUENCE_ID_SWITCH))}) with attn_uses_sequence_id, or remove packing_ratio."
        )
    switch = SEQUENCE_ID_SWITCH[name]
    if _switch_value(model, switch) is not True:
        raise ConfigError(
            f"{where} needs model.{'.'.join(switch)}: true, or packed samples attend to each other "
            "(see yamls/overrides/packing*.yaml)"
        )
    if loader["dataset"].get("decoder_only_format") is False:
        raise ConfigError(f"{where}: packing needs decoder_only_format: true")


def fit_packing_ratio(lengths: Sequence[int], max_seq_len: int, fill: float = FIT_FILL) -> float:
    """Samples per packed row (one decimal, at least 1) so rows are `fill` full on average.

    `lengths` are the samples' token counts (EOS included); longer ones count as max_seq_len (truncated).
    """
    if not lengths:
        raise ValueError("no samples to fit a packing ratio to")
    mean = sum(min(n, max_seq_len) for n in lengths) / len(lengths)
    return max(1.0, math.floor(10 * fill * max_seq_len / mean) / 10)


def padding_tokens(batch: dict[str, Any]) -> tuple[int, int]:
    """(padding tokens, all tokens) of a collated batch: the waste the benchmarks report."""
    mask = batch["attention_mask"]
    total = int(mask.numel())
    return total - int(mask.sum()), total
