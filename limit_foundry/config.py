"""Training configs: inheritance between YAML files, CLI overrides, and validation before any work.

LLM Foundry takes one flat YAML. The paper's eight runs share everything but their data, so a run
file names its parent with `inherit: <path relative to this file>` and overrides only what
differs; `compose_config` merges the chain (dicts deep-merged, lists and scalars replaced) and
applies `key=value` overrides. The result is what LLM Foundry receives: `limit-foundry config show
yamls/<run>.yaml` prints it.

This is the bottom layer: `validate_config` runs LLM Foundry's validation and the model path check.
The data loader's own checks (datasets built, packing safe) belong to the data layer, which composes
both in `limit_foundry.data.dataloader.validate_training_config`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from limit_foundry.errors import ConfigError

INHERIT_KEY = "inherit"


def _load_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return cfg


def _compose_file(path: Path, chain: tuple[Path, ...]) -> DictConfig:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"inheritance cycle: {cycle}")
    cfg = _load_yaml(path)
    parents = cfg.pop(INHERIT_KEY, None)
    if parents is None:
        return cfg
    if isinstance(parents, str):
        parents = [parents]
    if not isinstance(parents, ListConfig | list):
        raise ConfigError(f"{path}: `{INHERIT_KEY}` must be a path or a list of paths")
    merged = OmegaConf.create({})
    for parent in parents:
        merged = OmegaConf.merge(merged, _compose_file(path.parent / str(parent), (*chain, path)))
    return OmegaConf.merge(merged, cfg)  # type: ignore[return-value]


def compose_config(path: str | Path, overrides: list[str] | None = None) -> DictConfig:
    """The run config LLM Foundry receives: the inheritance chain merged, then `key=value` overrides.

    `${oc.env:...}` stays disabled, as in LLM Foundry's own train/eval scripts.
    """
    OmegaConf.clear_resolver("oc.env")
    cfg = _compose_file(Path(path), ())
    if overrides:
        bad = [o for o in overrides if "=" not in o]
        if bad:
            raise ConfigError(f"overrides must look like key=value, got {bad}")
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    return cfg  # type: ignore[return-value]


def to_yaml(cfg: DictConfig, resolve: bool = True) -> str:
    return OmegaConf.to_yaml(cfg, resolve=resolve)


def resolved_dict(cfg: DictConfig) -> dict[str, Any]:
    try:
        container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as err:  # omegaconf's errors name the key (e.g. MissingMandatoryValue)
        raise ConfigError(f"cannot resolve config: {err}") from err
    assert isinstance(container, dict)
    return container


def validate_config(cfg: DictConfig, check_paths: bool = True) -> dict[str, Any]:
    """Run LLM Foundry's own config validation, plus the model path check it leaves to training time.

    Raises ConfigError (unknown keys, unresolved values, a model directory that is not a checkpoint)
    before anything is written; returns the resolved config as a plain dict. Training also needs the
    data loader's checks: call `limit_foundry.data.dataloader.validate_training_config`, which runs both.
    """
    from llmfoundry.command_utils.train import TRAIN_CONFIG_KEYS, TrainConfig
    from llmfoundry.command_utils.train import validate_config as foundry_validate
    from llmfoundry.utils.config_utils import make_dataclass_and_log_config

    resolved = resolved_dict(cfg)
    try:
        _, train_cfg = make_dataclass_and_log_config(
            OmegaConf.create(resolved), TrainConfig, TRAIN_CONFIG_KEYS, transforms="all"
        )
        foundry_validate(train_cfg)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from err
    _check_model(resolved.get("model", {}), check_paths)
    return resolved


def _check_model(model: dict[str, Any], check_paths: bool) -> None:
    if model.get("name") != "limit_hf_mpt" or not check_paths:
        return
    source = str(model.get("pretrained_model_name_or_path", ""))
    local = Path(source).expanduser()
    looks_local = source.startswith((".", "/", "~")) or local.exists()
    if looks_local and not (local / "config.json").is_file():
        raise ConfigError(
            f"model.pretrained_model_name_or_path: {source} is not an MPT checkpoint directory "
            "(no config.json)"
        )


if __name__ == "__main__":  # `python -m limit_foundry.config`: the same as `limit-foundry config`
    import runpy
    import sys

    sys.argv[1:1] = ["config"]
    runpy.run_module("limit_foundry.cli", run_name="__main__")
