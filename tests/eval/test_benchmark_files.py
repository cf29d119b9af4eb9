"""Benchmark files: found or listed as missing, checked before model work, cut for smoke runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limit_foundry.errors import DataError
from limit_foundry.eval.benchmark_files import (
    eval_file,
    first_rows,
    locate,
    read_rows,
)
from limit_foundry.eval.config import load_gauntlet
from limit_foundry.eval.data import load_manifest

MISSING_IN_SHARED_V0 = {"mmlu", "hellaswag", "squad", "bigbench_elementary_math_qa"}


def test_shared_copy_lacks_exactly_the_known_benchmarks(gauntlet_data_dir: Path) -> None:
    present, missing = locate(load_gauntlet("v0"), gauntlet_data_dir, load_manifest())
    assert {m["benchmark"] for m in missing} == MISSING_IN_SHARED_V0
    assert {m["category"] for m in missing} == {
        "world_knowledge",
        "language_understanding",
        "symbolic_problem_solving",
        "reading_comprehension",
    }
    assert len(present) == 29
    assert all(f.provenance()["matches_pin"] for f in present.values())
    _, missing_v03 = locate(load_gauntlet("v0.3"), gauntlet_data_dir)
    assert {m["benchmark"] for m in missing_v03} == {
        "mmlu",
        "hellaswag",
        "squad",
        "bigbench_elementary_math_qa",
        "coqa",
    }


def _task(label: str = "copa"):
    return load_gauntlet("v0").tasks[label]


def test_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "copa.jsonl"
    good = json.dumps({"query": "q", "choices": ["a", "b"], "gold": 0})
    path.write_text(f"{good}\n{good}\n{{not json\n")
    with pytest.raises(DataError, match=r"copa\.jsonl:3: not valid JSON"):
        read_rows(path, _task())


def test_a_missing_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "copa.jsonl"
    path.write_text(
        json.dumps({"query": "q", "choices": ["a"], "gold": 0}) + "\n" + json.dumps({"query": "q"}) + "\n"
    )
    with pytest.raises(DataError, match=r"copa\.jsonl:2: missing choices, gold \(needed by multiple_choice"):
        read_rows(path, _task())


def test_a_corrupt_file_in_the_data_dir_stops_locate(tmp_path: Path) -> None:
    (tmp_path / "commonsense_reasoning").mkdir()
    (tmp_path / "commonsense_reasoning" / "copa.jsonl").write_bytes(b"\xff\xfe garbage\n")
    with pytest.raises(DataError, match="copa.jsonl"):
        locate(load_gauntlet("v0"), tmp_path)


def test_limit_takes_rows_in_turn_from_each_subcategory() -> None:
    rows = [{"category": c, "i": i} for i, c in enumerate("aaaabbc")]
    assert [r["i"] for r in first_rows(rows, 5, by_category=True)] == [0, 4, 6, 1, 5]
    assert [r["i"] for r in first_rows(rows, 3, by_category=False)] == [0, 1, 2]
    assert len(first_rows(rows, 50, by_category=True)) == 7


def test_limited_copy_of_a_real_file(gauntlet_data_dir: Path, tmp_path: Path) -> None:
    present, _ = locate(load_gauntlet("v0"), gauntlet_data_dir, limit=10)
    jeopardy = present["jeopardy"]
    assert jeopardy.rows > 10 and jeopardy.rows_used == 10 and jeopardy.provenance()["rows_used"] == 10
    target = eval_file(jeopardy, tmp_path)
    assert target == tmp_path / "world_knowledge" / "jeopardy_all.jsonl"
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 10 and len({r["category"] for r in rows}) == 5  # every subcategory represented
    assert rows == first_rows(read_rows(jeopardy.path, _task("jeopardy")), 10, by_category=True)


def test_a_file_no_longer_than_the_limit_is_read_in_place(gauntlet_data_dir: Path, tmp_path: Path) -> None:
    present, _ = locate(load_gauntlet("v0"), gauntlet_data_dir, limit=100)
    copa = present["copa"]
    assert copa.rows == 100 and copa.rows_used == 100  # all of copa: no copy, the original order
    assert eval_file(copa, tmp_path) == copa.path.resolve()
    assert list(tmp_path.iterdir()) == []
    unlimited, _ = locate(load_gauntlet("v0"), gauntlet_data_dir)
    assert eval_file(unlimited["jeopardy"], tmp_path) == unlimited["jeopardy"].path.resolve()
