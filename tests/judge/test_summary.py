"""`summarize` returns named fields: per order combination, per seed and pooled, and LIMIT's win rate."""

from __future__ import annotations

import pytest
from judgment_records import unit, write_result_dir

from limit_foundry.judge.results import load_result_dir
from limit_foundry.judge.summary import POOLED, summarize


def test_named_fields_of_a_comparison_judged_in_both_orders(tmp_path):
    # seed 0: B wins p0 and p1 in both orders; seed 1: p0 consistent A, p1 inconsistent (AB says B, BA says A)
    units = [unit(p, 0, o, "B") for p in ("p0", "p1") for o in ("AB", "BA")]
    units += [
        unit("p0", 1, "AB", "A"),
        unit("p0", 1, "BA", "A"),
        unit("p1", 1, "AB", "B"),
        unit("p1", 1, "BA", "A"),
    ]
    summary = summarize(load_result_dir(write_result_dir(tmp_path / "run", units, "both")), n_resamples=50)
    assert list(summary.combinations) == ["strict", "split"]
    assert summary.headline is summary.combinations["strict"]
    strict, split = summary.combinations["strict"], summary.combinations["split"]
    assert list(strict.per_seed) == ["0", "1"] and summary.per_seed is strict.per_seed
    assert [row["seed"] for row in strict.rows] == ["0", "1", POOLED]
    # strict: an inconsistent pair is a tie; split: half a vote each way
    assert (strict.pooled["a_wins"], strict.pooled["ties"], strict.pooled["b_wins"]) == (1, 1, 2)
    assert (split.pooled["a_wins"], split.pooled["ties"], split.pooled["b_wins"]) == (1.5, 0, 2.5)
    assert summary.pooled is strict.pooled
    # LIMIT's statistic: per seed B / (A + B) over decisive pairs, then the mean over seeds
    assert summary.limit_win_rate == pytest.approx((2 / 2 + 0 / 1) / 2)
    assert strict.per_seed["1"]["win_rate"] == 0.0 and strict.per_seed["0"]["win_rate"] == 1.0


def test_as_json_keeps_report_json_layout(tmp_path):
    units = [unit(f"p{i}", 0, "AB", o) for i, o in enumerate("BBA")]
    summary = summarize(load_result_dir(write_result_dir(tmp_path / "run", units)), n_resamples=20)
    data = summary.as_json()
    assert list(data) == [
        "name", "generator_a", "generator_b", "order_policy", "seeds", "n_prompts", "n_units",
        "unit_failures", "partial", "sources", "meta", "anomalies", "notes", "combinations",
    ]  # fmt: skip
    single = data["combinations"]["single"]
    assert list(single) == [
        "rows",
        "limit_win_rate",
        "limit_win_rate_ci",
        "lc_win_rate",
        "lc_win_rate_ci",
        "lc",
    ]
    assert single["rows"][-1] == summary.pooled and single["limit_win_rate"] == pytest.approx(2 / 3)
    # three pairs are too few for the length-controlled GLM: no LC, and the note says why
    assert single["lc_win_rate"] is None and single["lc"]["per_seed"] == {"0": None}
    assert "fewer than" in single["lc"]["notes"][0]


def test_length_controlled_fields_per_combination_and_headline(tmp_path):
    # 12 prompts, B wins the six where its answer is longer plus two more: enough pairs for the GLM
    lengths = [(100, 300 + 10 * i) if i < 6 else (300 + 10 * i, 100) for i in range(12)]
    outcomes = ["B"] * 6 + ["B", "B"] + ["A"] * 4
    units = [
        unit(f"p{i:02d}", 0, "AB", o, len_a=a, len_b=b)
        for i, (o, (a, b)) in enumerate(zip(outcomes, lengths, strict=True))
    ]
    comparison = load_result_dir(write_result_dir(tmp_path / "run", units))
    summary = summarize(comparison, n_resamples=40, lc_resamples=10)
    lc = summary.headline.lc
    assert lc is not None and lc.form == "minimal" and lc.fitted_pairs == 12
    assert summary.lc_win_rate == lc.win_rate == lc.per_seed["0"] == round(lc.win_rate, 6)
    assert summary.lc_win_rate_ci == lc.ci and len(lc.ci) == 2
    assert lc.length_weight < 0  # B won where it was longer
    assert summary.as_json()["combinations"]["single"]["lc"] == lc.as_json()
    no_lc = summarize(comparison, n_resamples=40, lc_resamples=None).headline
    assert no_lc.lc is None and no_lc.lc_win_rate is None and no_lc.as_json()["lc"] is None
