"""Training configs: inheritance between YAML files, CLI overrides, and validation before any work.

LLM Foundry takes one flat YAML. The paper's eight runs share everything but their data, so a run
file names its parent with `inherit: <path relative to this file>` and overrides only what
differs; `compose_config` merges the chain (dicts deep-merged, lists and scalars replaced) and
applies `key=value` overrides. The result is what LLM Foundry receives: `python -m
limit_foundry.config show yamls/<run>.yaml` prints it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

INHERIT_KEY = "inherit"


class ConfigError(ValueError):
    """A config that would fail (or silently misbehave) in LLM Foundry; the message names the key or path."""


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
    """Run LLM Foundry's own config validation, plus the checks it leaves to training time.

    Raises ConfigError (unknown keys, unresolved values, missing data or model paths) before anything
    is written; returns the resolved config as a plain dict.
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
    for hook in _extra_validators():
        hook(resolved, check_paths)
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


def _extra_validators() -> list:
    """Checks contributed by other parts of the package (data paths, packing)."""
    validators = []
    try:
        from limit_foundry.data.dataloader import validate_train_loader

        validators.append(validate_train_loader)
    except ImportError:
        pass
    return validators


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m limit_foundry.config",
        description="Show or validate a training config exactly as LLM Foundry will receive it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("show", "print the composed config (inheritance merged, overrides applied) as YAML"),
        ("validate", "run LLM Foundry's config validation and this package's path checks"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("config", help="a YAML under yamls/ (may use `inherit:`)")
        p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. variables.data_root=/data")
        if name == "show":
            p.add_argument(
                "--no-resolve",
                action="store_true",
                help="keep ${...} interpolations instead of resolving them (default: resolve)",
            )
        else:
            p.add_argument(
                "--no-path-checks",
                action="store_true",
                help="skip checks that data and model paths exist (default: check)",
            )
    args = parser.parse_args(argv)
    try:
        cfg = compose_config(args.config, args.overrides)
        if args.command == "show":
            if not args.no_resolve:
                resolved_dict(cfg)  # fail with the key named rather than print a broken config
            sys.stdout.write(to_yaml(cfg, resolve=not args.no_resolve))
        else:
            validate_config(cfg, check_paths=not args.no_path_checks)
            print(f"{args.config}: valid")
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
