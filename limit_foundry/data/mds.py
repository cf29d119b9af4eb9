"""Dataset directories: Streaming MDS shards per split that LLM Foundry's `finetuning` loader reads.

Layout of `<data_root>/<recipe dir>/` (it appears atomically, manifest included, or not at all):
    manifest.json           what was built, from what, and how (see build.py)
    <split>/                MDS shards: columns prompt/response (str), or messages (json) for chat rows
    <split>.rows.txt        row id (`<source>:<split>:<position>`) of each sample, in shard order
    tokenized/<split>/      with --tokenizer: pre-tokenized shards (column `turns`, LLM Foundry's format)
A split that mixes prompt/response rows with chat rows has only tokenized shards (MDS columns are
fixed per split, and LLM Foundry reads either shape but not both in one stream).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from limit_foundry.data.recipes import Recipe
from limit_foundry.data.rows import Row
from limit_foundry.errors import DataError
from limit_foundry.io import sha256_tree

MANIFEST = "manifest.json"
TOKENIZED_DIR = "tokenized"
TEXT_COLUMNS = {"prompt": "str", "response": "str"}
CHAT_COLUMNS = {"messages": "json"}
TOKENIZED_COLUMNS = {"turns": "json"}
SHARD_SIZE_LIMIT = 1 << 26  # streaming's default, written explicitly because it decides the bytes


def dataset_dir(data_root: str | Path, recipe: Recipe) -> Path:
    return Path(data_root) / recipe.dirname


def build_command(recipe: Recipe, data_root: str | Path) -> str:
    return f"limit-foundry data --recipe '{recipe.name}' --out {data_root}"


def split_format(rows: Sequence[Row]) -> str:
    """`prompt_response`, `chat`, or `mixed` (only storable pre-tokenized)."""
    kinds = {row.kind for row in rows}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def write_mds(out: Path, columns: dict[str, str], samples: Iterable[dict[str, Any]]) -> int:
    """Write samples as uncompressed MDS shards into a new directory `out`; returns the sample count."""
    from streaming import MDSWriter

    n = 0
    with MDSWriter(out=str(out), columns=columns, compression=None, size_limit=SHARD_SIZE_LIMIT) as writer:
        for sample in samples:
            writer.write(sample)
            n += 1
    return n


def write_text_split(root: Path, split: str, rows: Sequence[Row]) -> None:
    """Text shards of one split (prompt/response or chat) and the row-id sidecar."""
    kind = split_format(rows)
    if kind == "mixed":
        raise ValueError(
            f"split {split!r} mixes prompt/response and chat rows; it can only be written tokenized"
        )
    columns = CHAT_COLUMNS if kind == "chat" else TEXT_COLUMNS
    write_mds(root / split, columns, (row.example() for row in rows))


def write_row_ids(root: Path, split: str, rows: Sequence[Row]) -> None:
    """One row id per line (ids hold no whitespace: source names are checked by the recipe grammar)."""
    (root / f"{split}.rows.txt").write_text("".join(f"{row.row_id}\n" for row in rows), encoding="utf-8")


def read_row_ids(root: Path, split: str) -> list[str]:
    return (root / f"{split}.rows.txt").read_text(encoding="utf-8").splitlines()


def write_tokenized_split(root: Path, split: str, examples: Iterable[dict[str, Any]]) -> None:
    write_mds(root / TOKENIZED_DIR / split, TOKENIZED_COLUMNS, examples)


def content_hash(root: Path, splits: Iterable[str]) -> str:
    """sha256 over every shard and row-id file of the given splits (text and tokenized)."""
    paths = []
    for split in sorted(splits):
        for candidate in (root / split, root / f"{split}.rows.txt", root / TOKENIZED_DIR / split):
            if candidate.exists():
                paths.append(candidate)
    return sha256_tree(paths, root=root)


def read_manifest(
    directory: str | Path, recipe: Recipe | None = None, data_root: str | Path | None = None
) -> dict:
    """The manifest of a complete dataset, or DataError naming the path and the build command."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        how = f" Build it with: {build_command(recipe, data_root or directory.parent)}" if recipe else ""
        raise DataError(f"no dataset at {directory} ({MANIFEST} missing).{how}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg}); rebuild with --overwrite") from err


def read_text_rows(directory: Path, split: str) -> list[dict[str, Any]]:
    """The samples of a built split's text shards (prompt/response or messages dicts)."""
    from streaming import LocalDataset

    dataset = LocalDataset(str(directory), split)
    return [dataset[i] for i in range(len(dataset))]
