"""The LLM Foundry eval config built per checkpoint: custom metrics attached the way each model class takes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from limit_foundry.errors import ConfigError
from limit_foundry.eval.runner import EvalSettings, ModelEntry, attach_metrics, eval_config
from limit_foundry.models.checkpoints import CheckpointSpec

TASKS = [
    {"label": "copa", "icl_task_type": "multiple_choice", "dataset_uri": "c.jsonl", "num_fewshot": [0]},
    {"label": "ppl", "icl_task_type": "response_perplexity", "dataset_uri": "p.jsonl", "num_fewshot": [0]},
]


def _model_cfg(kind: str, path: Path) -> dict:
    entry = ModelEntry(kind, CheckpointSpec(kind, str(path), None, None))
    return eval_config(entry, TASKS, EvalSettings(), 512)["models"][0]["model"]


def test_hf_models_take_custom_metrics_as_eval_metrics(tiny_gpt2_dir: Path) -> None:
    model = _model_cfg("hf", tiny_gpt2_dir)
    assert model["name"] == "hf_causal_lm"
    assert model["additional_eval_metrics"] == ["response_perplexity"]
    assert "additional_train_metrics" not in model and "use_train_metrics" not in model


def test_mpt_models_take_them_as_train_metrics_with_train_metrics_off(tiny_hub_mpt_dir: Path) -> None:
    """LLM Foundry 0.22's MPT classes accept extra metrics only as train metrics (modeling_mpt); an ICL
    metric cannot run on training batches, so train metrics are switched off."""
    model = _model_cfg("mpt", tiny_hub_mpt_dir)
    assert model["name"] == "limit_hf_mpt"
    assert (
        model["additional_train_metrics"] == ["response_perplexity"] and model["use_train_metrics"] is False
    )
    assert "additional_eval_metrics" not in model
    mpt = {"name": "mpt_causal_lm", "additional_train_metrics": ["x"]}
    attach_metrics(mpt, ["open_ended_generation"])
    assert mpt == {
        "name": "mpt_causal_lm",
        "additional_train_metrics": ["x", "open_ended_generation"],
        "use_train_metrics": False,
    }


def test_other_model_classes_are_refused_for_custom_tasks() -> None:
    with pytest.raises(ConfigError, match="not 'my_lm'"):
        attach_metrics({"name": "my_lm"}, ["response_perplexity"])
    plain = {"name": "my_lm"}
    attach_metrics(plain, [])  # no custom task, nothing to attach
    assert plain == {"name": "my_lm"}
