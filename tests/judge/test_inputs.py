"""Answer files for sides A and B: formats, pairing per (prompt_id, seed), and every problem listed."""

from __future__ import annotations

import json

import pytest
from run_fixtures import answer_records, distinct_answers, write_records, write_sides

from limit_foundry.errors import ConfigError, DataError
from limit_foundry.judge.inputs import describe_inputs, load_pairs


def test_one_file_with_every_seed_equals_one_file_per_seed(tmp_path):
    answers = distinct_answers(4)
    per_seed = load_pairs(*write_sides(tmp_path / "split", *answers))
    together = load_pairs(*write_sides(tmp_path / "joined", *answers, per_seed_files=False))
    assert per_seed == together and len(per_seed) == 8
    first = per_seed[0]
    assert (first.prompt_id, first.seed, first.generator_a, first.generator_b) == (
        "p00",
        0,
        "model-a",
        "model-b",
    )
    assert first.output_a.startswith("A0") and first.output_b.startswith("B0")


def test_every_problem_is_listed_with_file_record_and_prompt(tmp_path):
    a = write_records(tmp_path / "a.json", answer_records("model-a", {f"p{i}": "x" for i in range(30)}, 0))
    bad = answer_records("model-b", {f"p{i}": "y" for i in range(30)}, 0)
    for record in bad[:25]:
        record["instruction"] = "changed"
    write_records(tmp_path / "b.jsonl", bad, jsonl=True)
    with pytest.raises(DataError) as err:
        load_pairs([a], [tmp_path / "b.jsonl"])
    message = str(err.value)
    assert "25 problem(s)" in message and "... and 5 more" in message
    assert "b.jsonl#0: prompt_id 'p0' instruction differs from" in message and "a.json#0" in message


def test_unknown_empty_policy_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="empty-answer policy"):
        load_pairs([], [], "ignore")


def test_inputs_are_described_by_path_and_hash(tmp_path):
    a, b = write_sides(tmp_path, *distinct_answers(1, seeds=(0,)))
    described = describe_inputs(a, b)
    assert described["a"][0]["path"] == str(a[0].resolve()) and len(described["b"][0]["sha256"]) == 64
    assert json.loads(a[0].read_text())[0]["prompt_id"] == "p00"
