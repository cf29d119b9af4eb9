"""One model through LLM Foundry 0.22's own eval (`llmfoundry.command_utils.evaluate`), raw metrics back.

Each checkpoint kind becomes an LLM Foundry `models:` entry: an HF directory `hf_causal_lm`, an MPT
directory (hub format or an `hf_checkpointer` export) `limit_hf_mpt`, a Composer `.pt` the model and
tokenizer sections of its training YAML plus `load_path`. MPT runs with torch attention and
cross-entropy (LLM Foundry's defaults need flash-attn) and integer batch sizes, so CPUs work too. Eval
writes `<label>-<shots>.jsonl` copies into the working directory, so it runs inside a scratch
directory, never the caller's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limit_foundry.errors import ConfigError, LimitFoundryError, ModelLoadError, UserError
from limit_foundry.eval.config import CUSTOM_TASK_METRICS
from limit_foundry.eval.distributed import FSDP_EVAL_CONFIG
from limit_foundry.models.checkpoints import (
    CheckpointSpec,
    composer_model_sections,
    identify_checkpoint,
)
from limit_foundry.models.weights import check_weight_files

MAX_SEQ_LEN_CAP = 2048  # MPT-7B's context, the max_seq_len of the LIMIT 7B runs (Jha et al. 2023)
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_MPT_MODELS = ("mpt_causal_lm", "limit_hf_mpt")


@dataclass(frozen=True)
class ModelEntry:
    model_id: str
    spec: CheckpointSpec


@dataclass(frozen=True)
class EvalSettings:
    batch_size: int = 4
    precision: str = "fp32"
    seed: int = 17
    attn_impl: str = "torch"
    trust_remote_code: bool = False
    log_level: str = "warning"
    fsdp: bool = False  # shard the model across the processes (for a model too large for one GPU)


@dataclass
class RawResult:
    metrics: dict[str, float] = field(default_factory=dict)  # LLM Foundry's metric keys -> values
    examples: dict[str, int] = field(default_factory=dict)  # same keys -> examples behind the value
    states: dict[str, dict[str, float]] = field(default_factory=dict)  # custom metrics' extra counters
    # seconds: importing LLM Foundry, its eval call (model build, evaluators, loop), and inside the model
    timing: dict[str, float] = field(default_factory=dict)


def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "model"


def parse_models(values: list[str], train_yaml: str | None = None) -> list[ModelEntry]:
    """`[name=]path` entries (also comma-separated) as checkpoints; ids must be unique."""
    entries: list[ModelEntry] = []
    for value in (v.strip() for chunk in values for v in chunk.split(",")):
        if not value:
            continue
        name, _, path = value.rpartition("=") if "=" in value else ("", "", value)
        spec = identify_checkpoint(path, train_yaml, train_yaml_for_files_only=True)
        model_id = _safe_id(name or (Path(path).stem if Path(path).is_file() else Path(path).name))
        if any(e.model_id == model_id for e in entries):
            raise UserError(f"two models are named {model_id!r}: name them with NAME=PATH")
        entries.append(ModelEntry(model_id, spec))
    if not entries:
        raise UserError("no model given")
    return entries


def check_checkpoint(entry: ModelEntry) -> None:
    """What can be checked without loading weights: files present, configs readable."""
    spec, path = entry.spec, Path(entry.spec.path)
    where = f"{entry.model_id} ({spec.path})"
    if spec.kind == "composer":
        if not zipfile.is_zipfile(path):
            raise ModelLoadError(f"{where}: not a Composer checkpoint (a torch .pt zip archive)")
        composer_sections(spec)
        return
    if not path.is_dir():
        return  # a hub id: fetched (and checked) by transformers when loading
    if not any((path / name).is_file() for name in _WEIGHT_FILES):
        raise ModelLoadError(f"{where}: no weights ({', '.join(_WEIGHT_FILES)})")
    try:
        check_weight_files(path)
    except ModelLoadError as err:
        raise ModelLoadError(f"{where}: {err}") from err
    if not any((path / name).is_file() for name in _TOKENIZER_FILES):
        raise ModelLoadError(f"{where}: no tokenizer files in the directory")


def composer_sections(spec: CheckpointSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `model` and `tokenizer` sections of a Composer checkpoint's training YAML."""
    sections = composer_model_sections(str(spec.train_yaml))
    model, tokenizer = dict(sections["model"]), dict(sections["tokenizer"])
    if "name" not in model or "name" not in tokenizer:
        raise ConfigError(f"{spec.train_yaml}: needs `model.name` and `tokenizer.name`")
    return model, tokenizer


def context_length(entry: ModelEntry) -> int | None:
    """The longest sequence a checkpoint accepts, from its config (None when unknown)."""
    if entry.spec.kind == "composer":
        model, _ = composer_sections(entry.spec)
        value = model.get("max_seq_len") or (model.get("config_overrides") or {}).get("max_seq_len")
        return int(value) if value else None
    config_path = Path(entry.spec.path) / "config.json"
    if not config_path.is_file():
        return None
    config = json.loads(config_path.read_text())
    for key in ("max_seq_len", "max_position_embeddings", "n_positions"):
        if isinstance(config.get(key), int) and config[key] > 0:
            return config[key]
    return None


def attach_metrics(model_cfg: dict[str, Any], registry_names: list[str]) -> None:
    """Give the model the custom tasks' metrics, the way each LLM Foundry model class accepts them.

    `hf_causal_lm` takes `additional_eval_metrics`; LLM Foundry's MPT classes only take
    `additional_train_metrics` (also added to their eval metrics), and a custom ICL metric cannot run
    on training batches, so train metrics are switched off (LLM Foundry 0.22,
    llmfoundry.models.mpt.modeling_mpt: `ComposerMPTCausalLM`).
    """
    if not registry_names:
        return
    name = model_cfg["name"]
    if name == "hf_causal_lm":
        model_cfg["additional_eval_metrics"] = [
            *(model_cfg.get("additional_eval_metrics") or []),
            *registry_names,
        ]
    elif name in _MPT_MODELS:
        model_cfg["additional_train_metrics"] = [
            *(model_cfg.get("additional_train_metrics") or []),
            *registry_names,
        ]
        model_cfg["use_train_metrics"] = False
    else:
        raise ConfigError(f"custom ICL tasks need hf_causal_lm or an MPT model, not {name!r}")


def model_entry_config(
    entry: ModelEntry, settings: EvalSettings, max_seq_len: int, metrics: list[str]
) -> dict[str, Any]:
    """The LLM Foundry `models:` item for one checkpoint."""
    spec = entry.spec
    load_path = None
    if spec.kind == "composer":
        model, tokenizer = composer_sections(spec)
        if model["name"] in ("hf_causal_lm", "limit_hf_mpt"):
            model["pretrained"] = False  # the checkpoint holds the weights
        load_path = str(Path(spec.path).resolve())
    elif spec.kind == "mpt":
        model = {"name": "limit_hf_mpt", "pretrained_model_name_or_path": spec.path}
        tokenizer = {"name": spec.tokenizer or spec.path}
    else:
        model = {
            "name": "hf_causal_lm",
            "pretrained_model_name_or_path": spec.path,
            "pretrained": True,
            "trust_remote_code": settings.trust_remote_code,
        }
        tokenizer = {"name": spec.tokenizer or spec.path}
    # with FSDP only rank 0 reads the weights and the others receive their shards (LLM Foundry's `mixed`)
    model["init_device"] = "mixed" if settings.fsdp else "cpu"
    if model["name"] in _MPT_MODELS:
        model["loss_fn"] = "torch_crossentropy"  # eval computes no loss; the fused one needs flash-attn
        if model["name"] == "limit_hf_mpt":
            model["attn_impl"] = settings.attn_impl
        else:
            model["attn_config"] = {**(model.get("attn_config") or {}), "attn_impl": settings.attn_impl}
    attach_metrics(model, metrics)
    # eval runs in a scratch directory: paths relative to the caller's directory become absolute
    for section, key in ((model, "pretrained_model_name_or_path"), (tokenizer, "name")):
        if isinstance(section.get(key), str) and Path(section[key]).exists():
            section[key] = str(Path(section[key]).resolve())
    kwargs = {**(tokenizer.get("kwargs") or {}), "model_max_length": max_seq_len}
    item: dict[str, Any] = {
        "model_name": entry.model_id,
        "model": model,
        "tokenizer": {**tokenizer, "kwargs": kwargs},
    }
    if load_path:
        item["load_path"] = load_path
    return item


def eval_config(
    entry: ModelEntry, icl_tasks: list[dict[str, Any]], settings: EvalSettings, max_seq_len: int
) -> dict[str, Any]:
    """A complete LLM Foundry eval config for one model (no `eval_gauntlet`: we score ourselves)."""
    metrics = sorted(
        {
            CUSTOM_TASK_METRICS[t["icl_task_type"]]
            for t in icl_tasks
            if t["icl_task_type"] in CUSTOM_TASK_METRICS
        }
    )
    cfg = {
        "run_name": f"gauntlet-{entry.model_id}",
        "seed": settings.seed,
        "max_seq_len": max_seq_len,
        "device_eval_batch_size": settings.batch_size,
        "precision": settings.precision,
        "python_log_level": settings.log_level,
        "log_config": False,
        "models": [model_entry_config(entry, settings, max_seq_len, metrics)],
        "icl_tasks": icl_tasks,
        "callbacks": {"limit_gauntlet_progress": {"model_id": entry.model_id, "evaluators": 0}},
        "loggers": {},
    }
    if settings.fsdp:
        cfg["fsdp_config"] = dict(FSDP_EVAL_CONFIG)
    return cfg


@contextlib.contextmanager
def working_directory(path: Path):
    previous = Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(previous)


def _float(value: Any) -> float:
    return float(value.item() if hasattr(value, "item") else value)


def collect(trainer: Any) -> RawResult:
    """Every evaluator's computed metrics under LLM Foundry's own logging keys, and the eval loop's timing.

    In a data-parallel run the values are the all-process ones: Composer computed each metric across the
    processes, and the example counts and extra counters are summed across them here (torchmetrics'
    `sync_context`, a no-op in one process), so every rank must call this, in the same order.
    """
    # here, not at the top: progress imports Composer, and checks and `score` must not pay for it
    from limit_foundry.eval.progress import GauntletProgress

    result = RawResult()
    for callback in trainer.state.callbacks:
        if isinstance(callback, GauntletProgress):
            result.timing["model_forward_seconds"] = callback.forward_seconds
            result.timing.update({f"loop_{phase}_seconds": s for phase, s in callback.seconds.items()})
    for label, metrics in trainer.state.eval_metrics.items():
        for name, metric in metrics.items():
            key = f"metrics/{label}/{name}"
            result.metrics[key] = _float(metric.compute())  # computed across processes by Composer's loop
            with metric.sync_context():
                if hasattr(metric, "total"):
                    result.examples[key] = int(_float(metric.total))
                extra = {
                    s: _float(getattr(metric, s))
                    for s in ("truncated", "tokens", "length_finished")
                    if hasattr(metric, s)
                }
            if extra:
                result.states[key] = extra
    return result


def run_model(
    entry: ModelEntry,
    icl_tasks: list[dict[str, Any]],
    settings: EvalSettings,
    max_seq_len: int,
    workdir: Path,
) -> RawResult:
    """Evaluate one model with LLM Foundry inside `workdir`; failures name the model."""
    started = time.perf_counter()
    import datasets
    from llmfoundry.command_utils import evaluate
    from omegaconf import OmegaConf

    datasets.disable_progress_bars()  # one bar per evaluator (GauntletProgress) is enough
    imported = time.perf_counter()  # LLM Foundry's import: paid by the first model of a run only
    cfg = eval_config(entry, icl_tasks, settings, max_seq_len)
    cfg["callbacks"]["limit_gauntlet_progress"]["evaluators"] = _count_evaluators(icl_tasks)
    with working_directory(workdir):
        try:
            trainers, _ = evaluate(OmegaConf.create(cfg))
        except LimitFoundryError:
            raise  # ours, from a custom task built inside eval: it names its file or option already
        except Exception as err:
            raise ModelLoadError(
                f"{entry.model_id} ({entry.spec.path}): LLM Foundry eval failed: {type(err).__name__}: {err}"
            ) from err
    result = collect(trainers[0])
    result.timing["import_seconds"] = imported - started
    result.timing["eval_wall_seconds"] = time.perf_counter() - imported
    trainers.clear()
    return result


def _count_evaluators(icl_tasks: list[dict[str, Any]]) -> int:
    """Evaluators LLM Foundry builds (one per shot; tasks with subcategories add one per subcategory)."""
    count = 0
    for task in icl_tasks:
        per_shot = 1
        if task.get("has_categories"):
            with open(task["dataset_uri"], encoding="utf-8") as f:
                per_shot = len({json.loads(line)["category"] for line in f if line.strip()})
        count += per_shot * len(task["num_fewshot"])
    return count
