"""Seeded subsets, stratified subsets, proportion mixtures and exact de-duplication.

Everything here is a pure function of the rows, the seed and a tag, with no dependence on Python's
`hash()`, set order, NumPy versions or the machine: a row's place in the seeded order is the
sha256 of (seed, tag, row text), ties broken by position. Taking the first n rows of that order
is a uniform random subset (Jha et al. 2023 (LIMIT) draw random subsets and publish no procedure or
seed), and it is nested: the
5,000 rows drawn for `instruct_v1_5k` are the same 5,000 in `instruct_v1_5k_lima`, because the tag
is the source name, not the recipe. Selected rows keep their source order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from limit_foundry.data.rows import Row


def seeded_order(rows: Sequence[Row], seed: int, tag: str) -> list[int]:
    """Positions of `rows` in a seeded pseudo-random order (sha256-keyed, machine independent)."""
    prefix = f"{seed}\0{tag}\0".encode()
    keys = [hashlib.sha256(prefix + row.content_key.encode()).digest() for row in rows]
    return sorted(range(len(rows)), key=lambda i: (keys[i], i))


def uniform_subset(rows: Sequence[Row], n: int, seed: int, tag: str) -> list[Row]:
    """`n` rows drawn uniformly without replacement, in source order."""
    if n > len(rows):
        raise ValueError(f"{tag}: asked for {n} rows but only {len(rows)} are available")
    chosen = sorted(seeded_order(rows, seed, tag)[:n])
    return [rows[i] for i in chosen]


def largest_remainder(weights: dict[str, float], n: int) -> dict[str, int]:
    """Split `n` in proportion to `weights` (Hamilton's method; ties go to the name first in order)."""
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("largest_remainder needs a positive total weight")
    quotas = {k: n * w / total for k, w in weights.items()}
    shares = {k: math.floor(q) for k, q in quotas.items()}
    left = n - sum(shares.values())
    for k in sorted(weights, key=lambda k: (-(quotas[k] - shares[k]), k))[:left]:
        shares[k] += 1
    return shares


def stratified_subset(rows: Sequence[Row], n: int, seed: int, tag: str) -> tuple[list[Row], dict[str, int]]:
    """`n` rows with each stratum (`Row.stratum`) represented in proportion to its size.

    Returns the rows (source order) and the per-stratum allocation. Rows without a stratum form
    the stratum "(none)".
    """
    if n > len(rows):
        raise ValueError(f"{tag}: asked for {n} rows but only {len(rows)} are available")
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(row.stratum or "(none)", []).append(i)
    allocation = largest_remainder({k: len(v) for k, v in groups.items()}, n)
    chosen: list[int] = []
    for stratum in sorted(groups):
        members = groups[stratum]
        order = seeded_order([rows[i] for i in members], seed, f"{tag}/{stratum}")
        chosen.extend(members[j] for j in order[: allocation[stratum]])
    return [rows[i] for i in sorted(chosen)], dict(sorted(allocation.items()))


def find_duplicates(rows: Sequence[Row], seen: set[tuple] | None = None) -> list[int]:
    """Positions of rows whose text (prompt and response, or messages) equals an earlier row's.

    `seen` carries texts across calls, so a later source's copies of an earlier source's rows count
    as duplicates too. The set is only used for membership tests, never iterated, so the result
    does not depend on hashing.
    """
    seen = set() if seen is None else seen
    duplicates = []
    for i, row in enumerate(rows):
        text = (row.prompt, row.response, row.messages)
        if text in seen:
            duplicates.append(i)
        else:
            seen.add(text)
    return duplicates


def split_heldout(rows: Sequence[Row], n: int, seed: int) -> tuple[list[Row], list[Row]]:
    """(train, heldout): `n` seeded rows moved out of `rows` into a held-out split, both in order."""
    if n >= len(rows):
        raise ValueError(f"a held-out split of {n} rows leaves no training rows (the recipe has {len(rows)})")
    held = set(seeded_order(rows, seed, "heldout")[:n])
    train = [row for i, row in enumerate(rows) if i not in held]
    heldout = [row for i, row in enumerate(rows) if i in held]
    return train, heldout
