"""Statistics checked against numbers counted by hand and against independent references."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from limit_foundry.judge.stats import (
    PairVerdict,
    bootstrap_weights,
    cohen_kappa,
    combine_orders,
    confusion_matrix,
    feature_tensor,
    mean_over_seeds_win_rate,
    percentile_ci,
    rate_metrics,
    raw_agreement,
    sign_test,
    tie_discounted_accuracy,
)


def test_combine_orders_strict_and_split():
    assert combine_orders(["B"], "strict") == (0.0, 0.0, 1.0)
    assert combine_orders(["B", "B"], "strict") == (0.0, 0.0, 1.0)
    assert combine_orders(["A", "B"], "strict") == (0.0, 1.0, 0.0)  # disagreement is a tie
    assert combine_orders(["A", "tie"], "strict") == (0.0, 1.0, 0.0)
    assert combine_orders(["A", "B"], "split") == (0.5, 0.0, 0.5)
    assert combine_orders(["B", "tie"], "split") == (0.0, 0.5, 0.5)
    with pytest.raises(ValueError, match="unknown outcome"):
        combine_orders(["C"], "strict")


def test_rates_on_ten_prompts_counted_by_hand():
    # 6 B wins, 2 A wins, 2 ties; B's answers are longer on every pair.
    outcomes = ["B"] * 6 + ["A"] * 2 + ["tie"] * 2
    pairs = [
        PairVerdict(f"p{i}", "0", combine_orders([o], "single"), None, 10, 30) for i, o in enumerate(outcomes)
    ]
    features = feature_tensor(pairs, [f"p{i}" for i in range(10)], ["0"])
    rates = rate_metrics(features.sum(axis=(0, 1)))
    assert rates["win_rate"] == pytest.approx(6 / 8)
    assert rates["win_rate_ties_half"] == pytest.approx(7 / 10)
    assert rates["equivalent_or_better"] == pytest.approx(8 / 10)
    assert rates["share_tie"] == pytest.approx(0.2)
    assert rates["longer_wins"] == pytest.approx(6 / 8)  # B is longer; B won 6 of the 8 decisive


def test_failed_pairs_add_no_votes():
    pairs = [PairVerdict("p0", "0", None, "parse_error"), PairVerdict("p1", "0", (0.0, 0.0, 1.0))]
    totals = feature_tensor(pairs, ["p0", "p1"], ["0"]).sum(axis=(0, 1))
    assert totals[:3].tolist() == [0.0, 0.0, 1.0]


def test_limit_mean_over_seeds_differs_from_pooled():
    # seed 0: B wins 3 of 4 decisive; seed 1: B wins 1 of 2 decisive (+1 tie dropped).
    per_seed = np.array([[1, 0, 3, 0, 0], [1, 1, 1, 0, 0]], dtype=float)
    assert mean_over_seeds_win_rate(per_seed) == pytest.approx((0.75 + 0.5) / 2)
    assert rate_metrics(per_seed.sum(axis=0))["win_rate"] == pytest.approx(4 / 6)


@pytest.mark.parametrize(("wins", "losses"), [(6, 2), (0, 0), (5, 5), (12, 3), (0, 7), (40, 60)])
def test_sign_test_matches_comb_and_scipy(wins, losses):
    n = wins + losses
    if n:
        by_hand = min(1.0, 2 * sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n)
        assert sign_test(wins, losses) == pytest.approx(by_hand)
        assert sign_test(wins, losses) == pytest.approx(binomtest(wins, n, 0.5).pvalue)
    else:
        assert sign_test(0, 0) == 1.0
    assert sign_test(6, 2) == pytest.approx(74 / 256)  # 2 * (1 + 8 + 28) / 2^8


def test_bootstrap_weights_are_fixed_resamples():
    first = bootstrap_weights(7, 50, rng_seed=3)
    assert first.shape == (50, 7) and (first.sum(axis=1) == 7).all()
    assert np.array_equal(first, bootstrap_weights(7, 50, rng_seed=3))
    assert not np.array_equal(first, bootstrap_weights(7, 50, rng_seed=4))


def test_percentile_ci_ignores_undefined_replicates():
    samples = np.array([np.nan, *np.linspace(0, 1, 101)])
    low, high = percentile_ci(samples, 0.9)
    assert low == pytest.approx(0.05) and high == pytest.approx(0.95)
    assert percentile_ci(np.array([np.nan]), 0.95) is None


def test_kappa_on_a_2x2_table_by_hand():
    # judge/reference: both A 4, both B 3, judge A ref B 2, judge B ref A 1.
    rows = [("A", "A")] * 4 + [("B", "B")] * 3 + [("A", "B")] * 2 + [("B", "A")]
    confusion = confusion_matrix(rows)
    # p_o = 0.7; judge marginals A .6 B .4, reference A .5 B .5 -> p_e = .5; kappa = .2 / .5
    assert raw_agreement(confusion) == pytest.approx(0.7)
    assert cohen_kappa(confusion) == pytest.approx(0.4)
    assert tie_discounted_accuracy(confusion) == pytest.approx(0.7)  # no ties: equals raw agreement


def test_tie_discounted_accuracy_counts_ties_half():
    rows = [("A", "A"), ("tie", "A"), ("B", "tie"), ("A", "B"), ("tie", "tie")]
    confusion = confusion_matrix(rows)
    assert raw_agreement(confusion) == pytest.approx(2 / 5)
    assert tie_discounted_accuracy(confusion) == pytest.approx((2 + 0.5 + 0.5) / 5)


def test_kappa_undefined_when_chance_agreement_is_total():
    assert math.isnan(float(cohen_kappa(confusion_matrix([("A", "A")] * 3))))


def test_metrics_work_on_stacks_of_tables():
    stack = np.stack([confusion_matrix([("A", "A"), ("B", "B")]), confusion_matrix([("A", "B"), ("B", "A")])])
    assert cohen_kappa(stack).tolist() == pytest.approx([1.0, -1.0])
