"""Which kind of checkpoint a path is, what its fingerprint is, and how to load it for generation.

Three kinds, all loaded as (a transformers-style causal LM, its tokenizer):
- `hf`: a transformers directory (or hub id) of any non-MPT architecture, via `AutoModelForCausalLM`.
- `mpt`: an MPT directory: the HF exports written by LLM Foundry's `hf_checkpointer` and hub-format
  checkpoints (`mosaicml/mpt-7b`, local copies) alike, through `limit_foundry.models.hub_mpt`, which
  builds LLM Foundry's own `MPTForCausalLM` (no remote code: LLM Foundry 0.22's MPT classes load them).
- `composer`: a Composer `.pt` checkpoint plus the training YAML it came from. The model and tokenizer
  are built from the YAML's `model`/`tokenizer` sections with LLM Foundry's builders (base weights not
  downloaded), then the checkpoint's `state['model']` is loaded with its `model.` prefix stripped.
  Composer checkpoints are pickles: load only checkpoints you trust, as Composer itself does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from limit_foundry.errors import ConfigError, ModelLoadError, UserError
from limit_foundry.io import sha256_file, sha256_tree, stable_json_hash
from limit_foundry.models.weights import resolve_checkpoint_dir
from limit_foundry.remote import fetch_to_cache, is_remote

KINDS = ("hf", "mpt", "composer")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


@dataclass(frozen=True)
class CheckpointSpec:
    kind: str
    path: str  # a directory, a `.pt` file or a hub id
    train_yaml: str | None = None
    tokenizer: str | None = None  # a tokenizer directory or hub id overriding the checkpoint's own
    source: str | None = None  # the object-store URI `path` was downloaded from (limit_foundry.remote)


@dataclass
class LoadedCheckpoint:
    model: Any  # a transformers PreTrainedModel in eval mode
    tokenizer: Any
    spec: CheckpointSpec
    context_length: int | None  # longest sequence (prompt + output) the model accepts; None if unbounded
    details: dict[str, Any] = field(default_factory=dict)  # what was chosen while loading, for the manifest


def _looks_like_hub_id(name: str) -> bool:
    return not name.startswith((".", "/", "~")) and name.count("/") == 1 and not Path(name).suffix


def identify_checkpoint(
    model: str,
    train_yaml: str | None = None,
    tokenizer: str | None = None,
    train_yaml_for_files_only: bool = False,
) -> CheckpointSpec:
    """Decide the kind from what is on disk; fail with the reason when it is none of them.

    An object-store URI (`s3://...`) is downloaded to the local cache first (`limit_foundry.remote`) and
    identified there. `train_yaml_for_files_only` ignores `train_yaml` for anything but a `.pt` file (one
    training YAML given for a list of models).
    """
    # --- object storage: a URI becomes its verified local copy --------------------------------------
    source = model if is_remote(model) else None
    path = fetch_to_cache(model).expanduser()
    if source is not None:
        return replace(
            identify_checkpoint(str(path), train_yaml, tokenizer, train_yaml_for_files_only), source=source
        )
    # --- end object storage ---------------------------------------------------------------------------
    if train_yaml_for_files_only and not path.is_file():
        train_yaml = None
    if path.is_file():
        if train_yaml is None:
            raise ModelLoadError(
                f"{model}: a Composer checkpoint file needs --train-yaml (the YAML it was trained with)"
            )
        if not Path(train_yaml).is_file():
            raise ModelLoadError(f"{train_yaml}: training YAML not found")
        return CheckpointSpec("composer", str(path), str(train_yaml), tokenizer)
    if train_yaml is not None:
        raise ModelLoadError(f"{model}: --train-yaml is only for Composer .pt checkpoint files")
    if path.is_dir():
        config_path = path / "config.json"
        if not config_path.is_file():
            sharded = any(path.glob("*.distcp")) or (path / ".metadata").exists()
            hint = (
                "a sharded Composer checkpoint: convert it to one .pt (or an HF export) first"
                if sharded
                else "pass an HF model directory, or a Composer .pt file with --train-yaml"
            )
            raise ModelLoadError(f"{model}: no config.json, not a model directory ({hint})")
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as err:
            raise ModelLoadError(f"{config_path}: not valid JSON ({err.msg})") from err
        kind = "mpt" if config.get("model_type") == "mpt" else "hf"
        return CheckpointSpec(kind, str(path), None, tokenizer)
    if _looks_like_hub_id(model):
        kind = "mpt" if model.split("/")[1].lower().startswith("mpt") else "hf"
        return CheckpointSpec(kind, model, None, tokenizer)
    raise ModelLoadError(f"{model}: no such file or directory")


def composer_model_sections(train_yaml: str) -> dict[str, Any]:
    """The resolved `model` and `tokenizer` sections of the training YAML that built a Composer checkpoint."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from limit_foundry.config import compose_config  # omegaconf and the config layer: only when needed

    try:
        cfg = compose_config(train_yaml)
        sections = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "tokenizer")}
    except (ConfigError, KeyError, ValueError) as err:
        raise ModelLoadError(f"{train_yaml}: cannot read its model and tokenizer sections ({err})") from err
    except OmegaConfBaseException as err:  # interpolation errors name the key
        raise ModelLoadError(f"{train_yaml}: cannot resolve model/tokenizer sections ({err})") from err
    return sections


def checkpoint_fingerprint(spec: CheckpointSpec) -> dict[str, Any]:
    """The kind, path and a sha256 over the weights, config and tokenizer files, for manifests.

    A hub id is fingerprinted by name only (its files are fetched when loading).
    """
    fingerprint: dict[str, Any] = {"kind": spec.kind, "path": spec.path}
    if spec.source is not None:
        fingerprint["source"] = spec.source
    path = Path(spec.path)
    if spec.kind == "composer":
        assert spec.train_yaml is not None
        fingerprint["train_yaml"] = spec.train_yaml
        fingerprint["model_sections_sha256"] = stable_json_hash(composer_model_sections(spec.train_yaml))
        fingerprint["sha256"] = sha256_file(path)
    elif path.is_dir():
        fingerprint["sha256"] = sha256_tree([path], root=path)
    else:
        fingerprint["sha256"] = None
    if spec.tokenizer:
        tokenizer_path = Path(spec.tokenizer)
        fingerprint["tokenizer"] = spec.tokenizer
        if tokenizer_path.is_dir():
            fingerprint["tokenizer_sha256"] = sha256_tree([tokenizer_path], root=tokenizer_path)
    return fingerprint


def resolve_device_and_dtype(device: str = "auto", dtype: str = "auto") -> tuple[str, str]:
    """`auto` picks CUDA when present; bfloat16 there, float32 on the CPU."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"--device {device}: CUDA is not available on this machine")
    if dtype == "auto":
        dtype = "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in ("float32", "bfloat16", "float16"):
        raise ModelLoadError(f"--dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
    return device, dtype


def resolve_attn_impl(attn_impl: str, device: str) -> str:
    """MPT attention: flash-attn on CUDA when installed, torch otherwise (LLM Foundry's default, flash,
    needs flash-attn, which needs CUDA)."""
    if attn_impl != "auto":
        return attn_impl
    import importlib.util

    return "flash" if device.startswith("cuda") and importlib.util.find_spec("flash_attn") else "torch"


def load_tokenizer(source: str | Path, where: str):
    """A checkpoint's or `--tokenizer`'s tokenizer; ModelLoadError naming `where` when it does not load."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source))
    except Exception as err:  # transformers raises OSError/ValueError/KeyError for broken directories
        raise ModelLoadError(f"{where}: tokenizer does not load ({type(err).__name__}: {err})") from err


def _has_tokenizer(directory: Path) -> bool:
    return any((directory / name).is_file() for name in _TOKENIZER_FILES)


def _load_hf(spec: CheckpointSpec, dtype: str, trust_remote_code: bool):
    import torch
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            spec.path, torch_dtype=getattr(torch, dtype), trust_remote_code=trust_remote_code
        )
    except Exception as err:  # transformers raises many types for a directory that does not load
        raise ModelLoadError(f"{spec.path}: model does not load ({type(err).__name__}: {err})") from err
    return model, load_tokenizer(spec.tokenizer or spec.path, spec.tokenizer or spec.path)


def _load_mpt(spec: CheckpointSpec, attn_impl: str):
    from limit_foundry.models.hub_mpt import load_hub_mpt  # imports LLM Foundry (~11 s): only when needed

    try:
        directory = resolve_checkpoint_dir(spec.path)
        model = load_hub_mpt(str(directory), attn_impl=attn_impl)
    except UserError as err:  # config, weight-file and shape errors, each naming its file or key
        raise ModelLoadError(f"{spec.path}: MPT checkpoint does not load ({err})") from err
    if spec.tokenizer is None and not _has_tokenizer(directory):
        raise ModelLoadError(f"{spec.path}: no tokenizer files in the directory; pass --tokenizer")
    return model, load_tokenizer(spec.tokenizer or directory, spec.tokenizer or spec.path)


def _strip_prefix(state: dict[str, Any], prefix: str = "model.") -> dict[str, Any]:
    return {key[len(prefix) :] if key.startswith(prefix) else key: value for key, value in state.items()}


def _load_composer(spec: CheckpointSpec, attn_impl: str):
    import torch
    from llmfoundry.utils.builders import build_composer_model, build_tokenizer

    assert spec.train_yaml is not None
    sections = composer_model_sections(spec.train_yaml)
    model_cfg = dict(sections["model"] or {})
    tokenizer_cfg = dict(sections["tokenizer"] or {})
    if "name" not in model_cfg or "name" not in tokenizer_cfg:
        raise ModelLoadError(f"{spec.train_yaml}: needs `model.name` and `tokenizer.name`")
    name = model_cfg.pop("name")
    if name in ("hf_causal_lm", "limit_hf_mpt"):
        model_cfg["pretrained"] = False  # the checkpoint holds the weights; never fetch the base model's
    if isinstance(model_cfg.get("attn_config"), dict) or name == "mpt_causal_lm":
        model_cfg["attn_config"] = {**(model_cfg.get("attn_config") or {}), "attn_impl": attn_impl}
    model_cfg["init_device"] = "cpu"
    try:
        tokenizer = build_tokenizer(
            spec.tokenizer or tokenizer_cfg["name"], tokenizer_cfg.get("kwargs") or {}
        )
        composer_model = build_composer_model(name, model_cfg, tokenizer)
    except Exception as err:  # registry and constructor errors: report with the YAML named
        raise ModelLoadError(f"{spec.train_yaml}: cannot build model {name!r} ({err})") from err
    try:
        checkpoint = torch.load(spec.path, map_location="cpu", weights_only=False)
        state = checkpoint["state"]["model"]
    except Exception as err:  # a torn or foreign file
        raise ModelLoadError(f"{spec.path}: not a Composer checkpoint ({type(err).__name__}: {err})") from err
    model = composer_model.model
    result = model.load_state_dict(_strip_prefix(state), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelLoadError(
            f"{spec.path}: weights do not match the model built from {spec.train_yaml} "
            f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
    return model, tokenizer


def _context_length(model: Any) -> int | None:
    config = model.config
    for key in ("max_seq_len", "max_position_embeddings", "n_positions"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def load_checkpoint(
    spec: CheckpointSpec,
    device: str = "auto",
    dtype: str = "auto",
    attn_impl: str = "auto",
    trust_remote_code: bool = False,
) -> LoadedCheckpoint:
    """(model, tokenizer) ready for batched generation: eval mode, on `device`, left padding, a pad token."""
    import torch

    device, dtype = resolve_device_and_dtype(device, dtype)
    details: dict[str, Any] = {"device": device, "dtype": dtype}
    if spec.kind == "hf":
        model, tokenizer = _load_hf(spec, dtype, trust_remote_code)
    else:
        details["attn_impl"] = resolve_attn_impl(attn_impl, device)
        loader = _load_mpt if spec.kind == "mpt" else _load_composer
        model, tokenizer = loader(spec, details["attn_impl"])
    model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
        details["pad_token_from_eos"] = True
    details["model_class"] = type(model).__name__
    return LoadedCheckpoint(model, tokenizer, spec, _context_length(model), details)
