"""Where a checkpoint's weights are and how they reach a model, without LLM Foundry.

- `resolve_checkpoint_dir`: a local directory as is, or a hub id downloaded with the user's HF token; the
  hub's failures are told apart by `huggingface_hub`'s exception types (gated, missing repository, missing
  revision, offline) and each gets a message that says what to do.
- `weight_files` / `index_shards`: the weight files of a transformers-layout directory, single or sharded.
- `check_weight_files`: those files' headers read (not their tensors), so a truncated or foreign file is
  named in a second, before a model is built; training, generation and the Gauntlet share it.
- `load_weights_shard_by_shard`: copies one file's tensors at a time into a built model, so peak memory is
  the model plus one shard (not two copies of the model), and checks that every model key was filled once.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from limit_foundry.errors import ModelLoadError, ServiceUnreachableError

# (single file, index of a sharded set), in the order transformers prefers them
WEIGHT_LAYOUTS = (
    ("model.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model.bin.index.json"),
)


def resolve_checkpoint_dir(name_or_path: str, revision: str | None = None) -> Path:
    """A local directory as is; a hub id downloaded (config and weights only) with the user's HF token."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"{name_or_path}: not a checkpoint directory (a file)")
    if name_or_path.startswith((".", "/", "~")):
        raise ModelLoadError(f"{name_or_path}: the directory does not exist")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    local_hint = "pass a local directory holding config.json and the weights instead"
    try:
        return Path(
            snapshot_download(
                name_or_path,
                revision=revision,
                allow_patterns=["*.json", "*.safetensors", "*.bin"],
                token=os.environ.get("HF_TOKEN") or None,
            )
        )
    except HFValidationError as err:  # not a hub id either: most often a mistyped local path
        raise ModelLoadError(
            f"{name_or_path}: the directory does not exist (nor is it a Hugging Face hub id)"
        ) from err
    except GatedRepoError as err:  # before RepositoryNotFoundError, its base class
        raise ModelLoadError(
            f"{name_or_path}: a gated repository on the Hugging Face hub: accept its terms at "
            f"https://huggingface.co/{name_or_path} and set HF_TOKEN, or {local_hint}"
        ) from err
    except RevisionNotFoundError as err:
        raise ModelLoadError(f"{name_or_path}: the hub repository has no revision {revision!r}") from err
    except RepositoryNotFoundError as err:
        raise ModelLoadError(
            f"{name_or_path}: neither a local directory nor a Hugging Face hub repository "
            "(a private repository needs HF_TOKEN)"
        ) from err
    except LocalEntryNotFoundError as err:
        raise ServiceUnreachableError(
            f"{name_or_path}: the Hugging Face hub cannot be reached (offline, or HF_HUB_OFFLINE is set) and "
            f"no copy is cached on this machine; {local_hint}"
        ) from err


def index_shards(index: Path) -> list[Path]:
    """The shard files a `*.index.json` names, each of them present; otherwise an error naming the index."""
    try:
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ModelLoadError(f"{index}: not a weight index ({type(err).__name__}: {err})") from err
    missing = [name for name in names if not (index.parent / name).is_file()]
    if missing:
        raise ModelLoadError(f"{index} names shards that are absent: {', '.join(missing)}")
    return [index.parent / name for name in names]


def weight_files(checkpoint_dir: Path) -> list[Path]:
    """The files holding a directory's weights: one file, or every shard its index names."""
    for single, index in WEIGHT_LAYOUTS:
        if (checkpoint_dir / single).exists():
            return [checkpoint_dir / single]
        if (checkpoint_dir / index).exists():
            return index_shards(checkpoint_dir / index)
    raise ModelLoadError(
        f"{checkpoint_dir}: no weights (model.safetensors, pytorch_model.bin or a sharded index)"
    )


def check_weight_header(file: Path) -> None:
    """Read a weight file's header, not its tensors: a truncated or foreign file fails before any loading."""
    if file.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(file), "np") as handle:  # numpy: the check needs no torch import
                handle.keys()
        except (SafetensorError, OSError) as err:
            raise ModelLoadError(f"{file}: unreadable safetensors file ({err})") from err
        return
    with open(file, "rb") as f:  # torch.save: a zip archive, or a pickle (protocol 2+ starts with 0x80)
        pickled = f.read(1) == b"\x80"
    if not (pickled or zipfile.is_zipfile(file)):
        raise ModelLoadError(f"{file}: not a torch checkpoint (neither a zip archive nor a pickle)")


def check_weight_files(checkpoint_dir: Path) -> list[Path]:
    """The directory's weight files (as `weight_files`), each with a readable header."""
    files = weight_files(checkpoint_dir)
    for file in files:
        check_weight_header(file)
    return files


def read_weight_file(file: Path) -> dict[str, Any]:
    """One safetensors or torch `.bin` file's tensors, on the CPU; an unreadable file is named."""
    import pickle

    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if file.suffix == ".safetensors":
            return load_file(file)
        return torch.load(file, map_location="cpu", weights_only=True)
    except (SafetensorError, OSError, RuntimeError, EOFError, pickle.UnpicklingError) as err:
        # torch.load raises RuntimeError, EOFError or UnpicklingError for a torn or foreign file
        raise ModelLoadError(f"{file}: weights do not load ({type(err).__name__}: {err})") from err


def load_weights_shard_by_shard(model: Any, files: list[Path], ignore: frozenset[str] = frozenset()) -> None:
    """Copy each file's tensors into `model` in turn; every model key must be filled exactly once.

    `ignore` names checkpoint keys the model does not hold on purpose (a tied `lm_head.weight`). A key
    the model lacks, a model key no file holds and a key held by two files are all errors naming the key.
    """
    expected = set(model.state_dict())
    filled: dict[str, Path] = {}
    unexpected: dict[str, Path] = {}
    for file in files:
        shard = {key: tensor for key, tensor in read_weight_file(file).items() if key not in ignore}
        twice = sorted(key for key in shard if key in filled)
        if twice:
            raise ModelLoadError(
                f"{file}: holds tensors already loaded from {filled[twice[0]]}: {_names(twice)}"
            )
        try:
            result = model.load_state_dict(shard, strict=False)
        except RuntimeError as err:  # shape mismatches name the key
            raise ModelLoadError(f"{file}: weights do not fit the model ({err})") from err
        unexpected.update(dict.fromkeys(result.unexpected_keys, file))
        filled.update((key, file) for key in shard if key in expected)
        del shard, result  # release this shard before reading the next
    missing = sorted(expected - set(filled))
    if missing or unexpected:
        where = files[0].parent
        problems = ([f"missing {_names(missing)}"] if missing else []) + (
            [f"unexpected {_names(sorted(unexpected))}"] if unexpected else []
        )
        raise ModelLoadError(f"{where}: weights do not match the model ({'; '.join(problems)})")


def _names(keys: list[str], shown: int = 5) -> str:
    return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")
