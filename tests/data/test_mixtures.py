"""Seeded subsets are uniform, nested, stratified on request, and identical in every process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from limit_foundry.data.mixtures import (
    find_duplicates,
    largest_remainder,
    seeded_order,
    split_heldout,
    stratified_subset,
    uniform_subset,
)
from limit_foundry.data.rows import Row


def rows(n: int, strata: tuple[str, ...] = ("a",)) -> list[Row]:
    return [
        Row(f"s:train:{i}", "s", f"prompt {i}", f"response {i}", stratum=strata[i % len(strata)])
        for i in range(n)
    ]


def test_subset_is_seeded_nested_and_in_source_order() -> None:
    pool = rows(200)
    small = uniform_subset(pool, 20, 17, "s")
    large = uniform_subset(pool, 50, 17, "s")
    assert len(small) == 20 and len({r.row_id for r in small}) == 20
    assert {r.row_id for r in small} <= {r.row_id for r in large}  # nested: same order, longer prefix
    assert small == sorted(small, key=lambda r: int(r.row_id.rsplit(":", 1)[1]))
    assert uniform_subset(pool, 20, 17, "s") == small
    assert uniform_subset(pool, 20, 18, "s") != small
    assert uniform_subset(pool, 20, 17, "other") != small
    with pytest.raises(ValueError, match="only 200 are available"):
        uniform_subset(pool, 201, 17, "s")


def test_subset_choice_follows_row_text_not_position() -> None:
    pool = rows(100)
    chosen = {r.row_id for r in uniform_subset(pool, 10, 17, "s")}
    shuffled = pool[50:] + pool[:50]
    assert {r.row_id for r in uniform_subset(shuffled, 10, 17, "s")} == chosen


def test_subsets_are_roughly_uniform() -> None:
    # Over many seeds every row is picked about n/N of the time (a biased order would not be).
    pool = rows(50)
    picks = Counter(r.row_id for seed in range(400) for r in uniform_subset(pool, 10, seed, "s"))
    rates = [picks[r.row_id] / 400 for r in pool]
    assert min(rates) > 0.1 and max(rates) < 0.3  # expected 0.2


def test_stratified_subset_keeps_the_strata_proportions() -> None:
    pool = rows(20, ("x",)) + [Row(f"s:train:{100 + i}", "s", f"p{i}", "r", stratum="y") for i in range(7)]
    pool += [Row(f"s:train:{200 + i}", "s", f"q{i}", "r", stratum="z") for i in range(3)]
    chosen, allocation = stratified_subset(pool, 10, 17, "s")
    assert allocation == {"x": 7, "y": 2, "z": 1}
    assert Counter(r.stratum for r in chosen) == Counter(allocation)


def test_largest_remainder_is_exact_and_deterministic() -> None:
    assert largest_remainder({"a": 1, "b": 1, "c": 1}, 10) == {"a": 4, "b": 3, "c": 3}
    assert sum(largest_remainder({"a": 0.3, "b": 0.7}, 7).values()) == 7


def test_duplicates_are_found_within_and_across_calls() -> None:
    a = Row("s:train:0", "s", "p", "r")
    b = Row("s:train:1", "s", "p", "r")  # same text, other position
    c = Row("t:train:0", "t", "p", "other")
    seen: set[tuple] = set()
    assert find_duplicates([a, b, c], seen) == [1]
    assert find_duplicates([Row("u:train:0", "u", "p", "r")], seen) == [0]


def test_heldout_split_moves_seeded_rows() -> None:
    train, heldout = split_heldout(rows(30), 5, 17)
    assert len(train) == 25 and len(heldout) == 5
    assert not {r.row_id for r in train} & {r.row_id for r in heldout}
    with pytest.raises(ValueError, match="leaves no training rows"):
        split_heldout(rows(5), 5, 17)


_CHILD = """
import json, sys
from limit_foundry.data.mixtures import seeded_order, stratified_subset
from limit_foundry.data.rows import Row
pool = [Row(f"s:train:{i}", "s", f"prompt {i}", f"response {i}", stratum="ab"[i % 2]) for i in range(300)]
chosen, _ = stratified_subset(pool, 40, 17, "s")
print(json.dumps({"order": seeded_order(pool, 17, "s"), "stratified": [r.row_id for r in chosen]}))
"""


def test_selection_is_identical_across_processes_and_hash_seeds() -> None:
    pool = [Row(f"s:train:{i}", "s", f"prompt {i}", f"response {i}", stratum="ab"[i % 2]) for i in range(300)]
    expected = {
        "order": seeded_order(pool, 17, "s"),
        "stratified": [r.row_id for r in stratified_subset(pool, 40, 17, "s")[0]],
    }
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
        )
        assert json.loads(out.stdout) == expected
