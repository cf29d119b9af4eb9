"""`python -m limit_foundry.report`: preference arithmetic, partial studies, clear errors.

The full report (three figures, numbers checked against real stage outputs) is covered by the slow
end-to-end study in tests/study/test_end_to_end.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limit_foundry.report import build_report, main, preference_rates


def summary(a: str, b: str, win_rate: float | None) -> dict:
    return {
        "generator_a": a,
        "generator_b": b,
        "combinations": {"single": {"rows": [{"win_rate": win_rate}]}},
    }


def test_preference_rate_is_the_mean_win_rate_over_a_runs_comparisons() -> None:
    rates = preference_rates(
        [summary("lima", "instruct", 0.25), summary("lima", "mix", 0.5), summary("lima", "x", None)]
    )
    assert rates["instruct"] == {"preference_rate": 0.25, "against": ["lima"]}
    assert rates["mix"]["preference_rate"] == 0.5
    assert rates["lima"] == {"preference_rate": (0.75 + 0.5) / 2, "against": ["instruct", "mix"]}
    assert "x" not in rates  # no decisive verdicts: no rate rather than a made-up one


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
