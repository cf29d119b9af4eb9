"""AlpacaEval annotation files like LIMIT's release: every anomaly counted, the paper's win rate by hand,
and our judgments exported in a form AlpacaEval's own metrics read."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from judgment_records import unit, write_result_dir

from limit_foundry.cli.judge import main as judge_cli
from limit_foundry.data.templates import PREAMBLE, strip_template
from limit_foundry.errors import EXIT_FAILURES, EXIT_USER_ERROR, DataError
from limit_foundry.judge.alpaca_eval_io import (
    AnomalyLog,
    comparison_from_files,
    export_alpaca_eval,
    load_alpaca_eval,
    normalise,
    split_runs,
)
from limit_foundry.judge.inputs import read_records
from limit_foundry.judge.summary import summarize

QUESTIONS = [f"q{i}" for i in range(5)]


def _rec(
    instruction: str, preference, out1: str = "first answer", out2: str = "second answer!", **extra
) -> dict:
    record = {
        "instruction": instruction,
        "output_1": out1,
        "generator_1": "model-a",
        "output_2": out2,
        "generator_2": "model-b",
        "dataset": "lima",
        "datasplit": "test",
        "annotator": "alpaca_eval_gpt4",
        "preference": preference,
        "price_per_example": 0.01,
        "time_per_example": 1.0,
    }
    record.update(extra)
    return {k: v for k, v in record.items() if v is not ...}


@pytest.fixture
def limit_like_files(tmp_path: Path) -> list[Path]:
    """Two concatenated runs in a JSON array, and a third seed as JSONL, with each anomaly in them."""
    run_1 = [
        _rec("q0", 2),
        _rec("q1", 1.0),
        _rec("q1", 2.0),  # duplicated inside the run
        _rec("q2", 0, out1="same", out2="same"),  # LIMIT's draw
        _rec("q3", -1),  # no verdict
        _rec("q4", 2, out1="", generator_2=...),  # empty output, generator field missing
    ]
    run_2 = [
        _rec("q0", 1),  # q0 again after the full set: a second run starts here (record 6)
        _rec("q1", 2),
        _rec("q2", None),  # no verdict
        _rec("q3", 2, generator_1="model-b", generator_2="model-a"),  # swapped: model-a won, i.e. A
        _rec("q4", 2),
    ]
    seeds_12 = tmp_path / "seeds12.json"
    seeds_12.write_text(json.dumps(run_1 + run_2, indent=1))
    seed_3 = tmp_path / "seed3.jsonl"
    lines = [
        _rec("q0", 2),
        _rec("q1", 2),
        _rec("q2", 1),
        _rec("q3", "2"),
        42,
        {"output_1": "x", "preference": 1},
    ]
    seed_3.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return [seeds_12, seed_3]


def test_every_anomaly_is_counted_with_examples(limit_like_files):
    comparison = comparison_from_files(limit_like_files)
    counts = {name: info["count"] for name, info in comparison.anomalies.items()}
    assert counts == {
        "not_a_record": 1,
        "missing_instruction": 1,
        "no_verdict": 2,
        "invalid_preference": 1,
        "float_preference": 2,
        "draw": 1,
        "empty_output_1": 1,
        "missing_generator_2": 1,
        "swapped_generators": 1,
        "duplicate_instruction": 1,
        "concatenated_run": 1,
        "incomplete_run": 1,
    }
    assert comparison.anomalies["concatenated_run"]["examples"] == ["seeds12.json#6"]
    assert comparison.anomalies["invalid_preference"]["examples"] == ["seed3.jsonl#3"]
    assert comparison.seeds == ["seeds12.json#run1", "seeds12.json#run2", "seed3.jsonl"]
    assert (comparison.generator_a, comparison.generator_b) == ("model-a", "model-b")
    assert comparison.unit_failures == {"invalid_preference": 1, "no_verdict": 2}


def test_limit_policy_by_hand(limit_like_files):
    summary = summarize(comparison_from_files(limit_like_files), n_resamples=200)
    single = summary.combinations["single"]
    # run 1: B 3 (q0, q1 dup, q4) A 1 (q1); run 2: B 2, A 2 (q3 flipped); seed 3: B 2, A 1.
    assert single.limit_win_rate == pytest.approx((3 / 4 + 2 / 4 + 2 / 3) / 3, abs=1e-6)
    pooled = single.pooled
    assert (pooled["a_wins"], pooled["ties"], pooled["b_wins"]) == (4, 1, 7)
    assert (pooled["n_pairs"], pooled["failed_pairs"]) == (15, 3)
    assert [row["win_rate"] for row in single.per_seed.values()] == pytest.approx(
        [0.75, 0.5, 2 / 3], abs=1e-6
    )


def test_report_cli_on_alpaca_eval_files(limit_like_files, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--alpaca-eval", *map(str, limit_like_files), "--policy", "limit", "--out", str(out)]
    assert judge_cli(["report", *args, "--n-resamples", "100"]) == EXIT_FAILURES  # 3 of 15 lack a verdict
    markdown = (out / "report.md").read_text()
    assert "| concatenated_run | 1 | seeds12.json#6 |" in markdown
    assert (
        "**LIMIT win rate** (single; per seed B/(A+B) over decisive verdicts, mean over 3 seeds" in markdown
    )
    assert "): 0.639 [" in markdown
    assert "3 of 15 pairs failed" in capsys.readouterr().err
    assert judge_cli(["report", "--alpaca-eval", str(limit_like_files[0])]) == EXIT_USER_ERROR  # needs --out


def test_per_file_grouping(limit_like_files):
    comparisons = load_alpaca_eval(limit_like_files, "per-file")
    assert [c.seeds for c in comparisons] == [["seeds12.json#run1", "seeds12.json#run2"], ["seed3.jsonl"]]


def test_broken_json_names_the_file_and_line(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"instruction": "q0", "preference": 2},\n{"instruction": \n')
    with pytest.raises(DataError, match=r"broken.json:4:1: not valid JSON"):
        comparison_from_files([broken])


def _judgments() -> list[dict]:
    return [
        unit("p0", 0, "AB", "B"),
        unit("p0", 0, "BA", "B"),
        unit("p1", 0, "AB", "B"),
        unit("p1", 0, "BA", "tie"),
        unit("p2", 0, "AB", "tie", status="no_call", no_call_reason="identical"),
        unit("p3", 0, "AB", None, status="failed", failure="refusal"),
        unit("p3", 0, "BA", "A"),
    ]


def test_export_round_trip_and_alpaca_eval_reads_it(tmp_path):
    answers = {(f"p{i}", 0): (f"answer a{i}", f"answer b{i}") for i in range(4)}
    path = tmp_path / "export.json"
    assert export_alpaca_eval(_judgments(), path, answers) == 4
    records = json.loads(path.read_text())
    assert [r["preference"] for r in records] == [2.0, 1.5, 1.5, None]
    assert records[3]["failure"] == "refusal" and records[3]["verdicts_by_order"] == {"AB": None, "BA": "A"}
    assert (records[0]["output_1"], records[0]["generator_2"], records[0]["instruction"]) == (
        "answer a0",
        "model-b",
        "Question p0?",
    )
    split = tmp_path / "split.json"
    export_alpaca_eval(_judgments(), split, answers, combination="split")
    assert [r["preference"] for r in json.loads(split.read_text())] == [2.0, 1.75, 1.5, None]

    pooled = summarize(comparison_from_files([path]), n_resamples=50).combinations["single"].pooled
    assert (pooled["a_wins"], pooled["ties"], pooled["b_wins"], pooled["failures"]) == (
        0,
        2,
        1,
        {"no_verdict": 1},
    )

    from alpaca_eval.metrics import get_winrate  # AlpacaEval's own reader of annotation preferences

    metrics = get_winrate(records)
    assert (metrics["n_wins"], metrics["n_draws"], metrics["n_total"]) == (1, 2, 3)


def test_export_refuses_pairs_without_answers(tmp_path):
    with pytest.raises(DataError, match="prompt_id 'p3' seed 0"):
        export_alpaca_eval(_judgments(), tmp_path / "x.json", {(f"p{i}", 0): ("a", "b") for i in range(3)})
    assert not (tmp_path / "x.json").exists()


def test_export_reads_answers_from_the_inputs_run_json_lists(tmp_path):
    sides = {}
    for side in "ab":
        records = [
            {"instruction": f"Question p{i}?", "output": f"{side} answers p{i}", "generator": f"model-{side}"}
            | {"prompt_id": f"p{i}", "seed": 0, "dataset": "lima", "datasplit": "test"}
            for i in range(4)
        ]
        sides[side] = tmp_path / f"{side}.json"
        sides[side].write_text(json.dumps(records))
    run = write_result_dir(
        tmp_path / "run",
        _judgments(),
        order_policy="both",
        inputs={"a": [{"path": str(sides["a"]), "sha256": "x"}], "b": [str(sides["b"])]},
    )
    assert export_alpaca_eval(_judgments(), tmp_path / "e.json", run_dir=run) == 4
    exported = json.loads((tmp_path / "e.json").read_text())
    assert (exported[2]["output_1"], exported[2]["output_2"]) == ("a answers p2", "b answers p2")
    with pytest.raises(ValueError, match="pass `answers` or `run_dir`"):
        export_alpaca_eval(_judgments(), tmp_path / "f.json")


def _runs(instructions: list[str]) -> tuple[list[int], dict[str, int]]:
    path_rows = [_rec(q, 2) for q in instructions]
    log = AnomalyLog()
    annotations = normalise(path_rows, "f.json", log)
    runs = split_runs(annotations, log)
    return [len(r) for r in runs], dict(log.counts)


def test_run_splitting_rules():
    qs = [f"q{i}" for i in range(10)]
    assert _runs(qs + qs[::-1]) == ([10, 10], {"concatenated_run": 1})  # second run in another order
    assert _runs(qs[:5] + qs) == ([5, 10], {"concatenated_run": 1})  # crashed run, then a rerun from the top
    assert _runs(qs + ["q3"]) == ([11], {"duplicate_instruction": 1})  # a repeated prompt at the end
    assert _runs(["q0", "q1", "q1", "q2"] + qs[3:] + qs) == (
        [11, 10],
        {"duplicate_instruction": 1, "concatenated_run": 1},
    )


def test_real_instruct_v3_prompts_with_duplicates_split_into_seeds(shared_dir, tmp_path):
    """LIMIT's 300 Instruct-v3 test prompts repeat 11 of themselves: three concatenated runs (the third
    cut short) must come back as three seeds, the repeats flagged as duplicates, not as new runs."""
    source = shared_dir / "data" / "limit_test_prompts" / "instructv3_test_prompts.txt"
    if not source.is_file():
        pytest.skip(f"real data absent: {source}")
    questions = [
        strip_template(PREAMBLE + part) for part in source.read_text().split(PREAMBLE) if part.strip()
    ]
    assert len(questions) == 300
    rng = random.Random(5)
    runs = [questions, questions, questions[:150]]
    prefs = [[rng.choice([1, 2, 2, 0, -1]) for _ in run] for run in runs]
    records = [_rec(q, p) for run, ps in zip(runs, prefs, strict=True) for q, p in zip(run, ps, strict=True)]
    path = tmp_path / "instructv3_annotations.json"
    path.write_text(json.dumps(records))

    comparison = comparison_from_files([path])
    assert comparison.seeds == [f"{path.name}#run{k}" for k in (1, 2, 3)]
    counts = {name: info["count"] for name, info in comparison.anomalies.items()}
    repeats = sum(len(run) - len(set(run)) for run in runs)
    assert repeats > 20 and counts["duplicate_instruction"] == repeats
    assert counts["concatenated_run"] == 2 and counts["incomplete_run"] == 1
    expected = [ps.count(2) / (ps.count(1) + ps.count(2)) for ps in prefs]
    summary = summarize(comparison, n_resamples=100, lc_resamples=None).combinations[
        "single"
    ]  # no LC: not tested here
    assert summary.limit_win_rate == pytest.approx(sum(expected) / 3, abs=1e-6)
    assert summary.pooled["failed_pairs"] == sum(ps.count(-1) for ps in prefs)


def test_read_records_formats(tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps(_rec("q0", 2)) + "\n")
    assert [r["instruction"] for r in read_records(one)] == ["q0"]
    bad_line = tmp_path / "bad.jsonl"
    bad_line.write_text(json.dumps(_rec("q0", 2)) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: not valid JSON"):
        read_records(bad_line)
    not_records = tmp_path / "obj.json"
    not_records.write_text('{"results": []}')
    with pytest.raises(DataError, match="expected a JSON array or JSONL"):
        read_records(not_records)
