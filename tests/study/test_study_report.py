"""`limit-foundry report` (study/report.py): preference arithmetic, partial studies, clear errors.

The full report (three figures, numbers checked against real stage outputs) is covered by the slow
end-to-end study in tests/study/test_end_to_end.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limit_foundry.cli.report import main
from limit_foundry.judge.length_control import LengthControlled
from limit_foundry.judge.summary import CombinationSummary, ComparisonSummary
from limit_foundry.study.report import build_report, preference_rates


def summary(
    a: str, b: str, win_rate: float | None, ci: list[float] | None = None, lc: LengthControlled | None = None
) -> ComparisonSummary:
    """A judge summary with the fields the study report reads."""
    pooled = {
        "seed": "pooled",
        "win_rate": 0.99,
    }  # pooled over seeds: not LIMIT's statistic, must not be used
    combination = CombinationSummary({}, pooled, limit_win_rate=win_rate, limit_win_rate_ci=ci, lc=lc)
    return ComparisonSummary(
        name=f"{a}_vs_{b}/lima_test",
        generator_a=a,
        generator_b=b,
        order_policy="single-seeded",
        seeds=[],
        n_prompts=0,
        n_units=0,
        unit_failures={},
        partial=False,
        sources=[],
        meta={},
        anomalies={},
        notes=[],
        combinations={"single": combination},
    )


def test_preference_rate_is_the_mean_limit_win_rate_over_a_runs_comparisons() -> None:
    rates = preference_rates(
        [
            summary("lima", "instruct", 0.25, [0.125, 0.375]),
            summary("lima", "mix", 0.5, [0.25, 0.75]),
            summary("lima", "x", None),
        ]
    )
    assert rates["instruct"] == {"preference_rate": 0.25, "ci": [0.125, 0.375], "against": ["lima"]}
    assert rates["mix"]["preference_rate"] == 0.5
    assert rates["lima"] == {"preference_rate": (0.75 + 0.5) / 2, "ci": None, "against": ["instruct", "mix"]}
    assert "x" not in rates  # no decisive verdicts: no rate rather than a made-up one
    assert preference_rates([summary("lima", "mix", 0.25, [0.125, 0.375])])["lima"]["ci"] == [0.625, 0.875]


def lc(win_rate: float | None, ci: list[float] | None = None) -> LengthControlled:
    return LengthControlled("minimal", win_rate, ci, {"0": win_rate}, -1.0, 100, {}, [])


def test_lc_preference_rate_is_the_same_mean_over_length_controlled_win_rates() -> None:
    summaries = [
        summary("lima", "instruct", 0.25, [0.125, 0.375], lc(0.5, [0.375, 0.625])),
        summary("lima", "mix", 0.5, [0.25, 0.75], lc(0.75)),
        summary("lima", "x", 0.5, [0.25, 0.75]),  # LC not computed: no LC rate rather than a made-up one
    ]
    rates = preference_rates(summaries, length_controlled=True)
    assert rates["instruct"] == {"preference_rate": 0.5, "ci": [0.375, 0.625], "against": ["lima"]}
    assert rates["lima"] == {"preference_rate": (0.5 + 0.25) / 2, "ci": None, "against": ["instruct", "mix"]}
    assert "x" not in rates
    assert preference_rates(summaries)["instruct"]["preference_rate"] == 0.25  # LIMIT's rate by default


def test_partial_study_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "study.json").write_text(
        json.dumps({"spec": {"name": "s", "path": "spec.yaml"}, "steps": []})
    )
    report = build_report(tmp_path).read_text()
    assert "No Gauntlet results" in report and "No judge results" in report
    assert (tmp_path / "figures" / "paradigms.png").is_file()


def test_missing_study_dir_is_an_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "study.json: missing" in capsys.readouterr().err


def test_limit_foundry_report_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("usage: limit-foundry report")


def test_a_partial_judge_run_is_marked_in_the_study_report(tmp_path: Path) -> None:
    (tmp_path / "study.json").write_text(
        json.dumps({"spec": {"name": "s", "path": "spec.yaml"}, "steps": []})
    )
    run_dir = tmp_path / "judge" / "lima_vs_mix" / "lima_test"
    run_dir.mkdir(parents=True)
    record = {"key": "p0|0|AB", "prompt_id": "p0", "seed": 0, "order": "AB", "status": "ok", "outcome": "B"}
    record |= {"slot_outcome": 2, "generator_a": "lima", "generator_b": "mix", "instruction": "Q?"}
    (run_dir / "judgments.jsonl").write_text(json.dumps(record) + "\n")
    run = {"order_policy": "single-seeded", "state": "interrupted", "partial": True}
    (run_dir / "run.json").write_text(json.dumps(run | {"planned_pairs": [["p0", 0], ["p1", 0]]}))
    report = build_report(tmp_path).read_text()
    assert "lima_vs_mix/lima_test **(PARTIAL)**" in report and "**PARTIAL** judge runs" in report
    assert "| 2 | 0 | 0 | 1 | 1 |" in report  # 2 planned pairs: one B win, one failed (never judged)
