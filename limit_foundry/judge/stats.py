"""The numbers behind a judge report: order combination, win rates, bootstrap CIs, sign test, kappa.

Everything here is a pure function of its inputs (the bootstrap takes a fixed RNG seed), so a report
re-run on the same judgments prints the same digits. Conventions, used by every caller:

- A pair (one prompt, one generation seed) carries a vote vector (A, tie, B) summing to 1: one-hot
  for a single judgment or the strict combination of two orders, halves for the split combination.
- Win rates are B's: output_2's generator in AlpacaEval terms (the model evaluated against the
  baseline in output_1), as in Jha et al. 2023's wins_B / (wins_A + wins_B).
- The prompt is the independent unit: the bootstrap resamples prompt ids and all seeds (and both
  orders) of a prompt move together; the sign test counts prompts, not pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

OUTCOMES = ("A", "tie", "B")  # the index order of every vote vector and confusion matrix
COMBINATIONS = ("strict", "split")

# Per-(prompt, seed) feature columns summed by the bootstrap; metrics are ratios of these.
FEATURES = ("a", "tie", "b", "longer_votes", "unequal_decisive")
_A, _TIE, _B, _LONGER, _UNEQUAL = range(len(FEATURES))
JSON_DIGITS = 6  # reported numbers are rounded to this many digits


@dataclass(frozen=True)
class PairVerdict:
    """The verdict on one (prompt, seed) pair: votes, or the cause of its failure."""

    prompt_id: str
    seed: str
    votes: tuple[float, float, float] | None  # (A, tie, B); None when the pair failed
    failure: str | None = None
    len_a: int | None = None
    len_b: int | None = None


def one_hot(outcome: str) -> tuple[float, float, float]:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r} (expected one of {OUTCOMES})")
    return tuple(1.0 if o == outcome else 0.0 for o in OUTCOMES)  # type: ignore[return-value]


def flip(outcome: str | None) -> str | None:
    """The same verdict with the sides swapped (A <-> B); ties and None unchanged."""
    return {"A": "B", "B": "A"}.get(outcome, outcome) if outcome else outcome


def combine_orders(outcomes: Sequence[str], combination: str) -> tuple[float, float, float]:
    """Votes of a pair judged in one or two orders.

    strict: the common outcome when the orders agree, else a tie; split: half a vote to each order.
    """
    if len(outcomes) == 1:
        return one_hot(outcomes[0])
    if len(outcomes) != 2:
        raise ValueError(f"a pair has one or two orders, got {len(outcomes)}")
    first, second = outcomes
    if combination == "strict":
        return one_hot(first if first == second else "tie")
    if combination == "split":
        return tuple((x + y) / 2 for x, y in zip(one_hot(first), one_hot(second), strict=True))  # type: ignore[return-value]
    raise ValueError(f"unknown combination {combination!r} (expected one of {COMBINATIONS})")


def feature_tensor(pairs: Sequence[PairVerdict], prompts: Sequence[str], seeds: Sequence[str]) -> np.ndarray:
    """Array [prompt, seed, feature] of summed votes; failed pairs contribute nothing here."""
    p_index = {p: i for i, p in enumerate(prompts)}
    s_index = {s: i for i, s in enumerate(seeds)}
    out = np.zeros((len(prompts), len(seeds), len(FEATURES)))
    for pair in pairs:
        if pair.votes is None:
            continue
        row = out[p_index[pair.prompt_id], s_index[pair.seed]]
        a, tie, b = pair.votes
        row[_A] += a
        row[_TIE] += tie
        row[_B] += b
        if pair.len_a is not None and pair.len_b is not None and pair.len_a != pair.len_b:
            row[_LONGER] += a if pair.len_a > pair.len_b else b
            row[_UNEQUAL] += a + b
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def rate_metrics(totals: np.ndarray) -> dict[str, np.ndarray]:
    """Rates from summed features (last axis = FEATURES); works on one vector or a stack of them.

    win_rate: B's wins over decisive verdicts (ties excluded); win_rate_ties_half: ties as half a win;
    equivalent_or_better: B's wins plus ties over all judged pairs; longer_wins: share of decisive
    votes, among pairs whose answers differ in length, won by the longer answer.
    """
    a, tie, b = totals[..., _A], totals[..., _TIE], totals[..., _B]
    judged = a + tie + b
    return {
        "win_rate": _ratio(b, a + b),
        "win_rate_ties_half": _ratio(b + tie / 2, judged),
        "equivalent_or_better": _ratio(b + tie, judged),
        "share_a": _ratio(a, judged),
        "share_tie": _ratio(tie, judged),
        "share_b": _ratio(b, judged),
        "longer_wins": _ratio(totals[..., _LONGER], totals[..., _UNEQUAL]),
    }


def mean_over_seeds_win_rate(per_seed_totals: np.ndarray) -> np.ndarray:
    """The paper's figure: per seed B / (A + B), then the plain mean over seeds (axis -2 of the input).

    Seeds with no decisive verdict have no rate and are left out of the mean.
    """
    rates = _ratio(per_seed_totals[..., _B], per_seed_totals[..., _A] + per_seed_totals[..., _B])
    defined = np.isfinite(rates)
    return _ratio(np.where(defined, rates, 0.0).sum(axis=-1), defined.sum(axis=-1))


def bootstrap_weights(n_units: int, n_resamples: int, rng_seed: int) -> np.ndarray:
    """[resample, unit] multiplicities of a with-replacement resample of n_units units.

    The same (n_units, n_resamples, rng_seed) always gives the same matrix, so comparisons over the
    same prompt list are resampled identically (paired).
    """
    if n_units == 0:
        return np.zeros((n_resamples, 0), dtype=np.int64)
    rng = np.random.default_rng(rng_seed)
    draws = rng.integers(0, n_units, size=(n_resamples, n_units))
    flat = draws + np.arange(n_resamples)[:, None] * n_units
    return np.bincount(flat.ravel(), minlength=n_resamples * n_units).reshape(n_resamples, n_units)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile interval of bootstrap samples, ignoring undefined (NaN) replicates; None if all are."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def json_number(value: float | None) -> float | None:
    """A JSON-safe rounded float (NaN becomes None) so reports are stable byte for byte."""
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), JSON_DIGITS)


def json_ci(samples: np.ndarray, level: float) -> list[float | None] | None:
    """The percentile interval of `samples` as rounded JSON numbers; None when every replicate is undefined."""
    ci = percentile_ci(samples, level)
    return [json_number(ci[0]), json_number(ci[1])] if ci else None


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test p-value: P(a split at least this uneven) under Binomial(n, 1/2)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1))
    return min(1.0, 2 * tail / 2**n)


def confusion_matrix(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """3x3 counts [judge outcome, reference outcome] in OUTCOMES order."""
    out = np.zeros((3, 3))
    for judge, reference in pairs:
        out[OUTCOMES.index(judge), OUTCOMES.index(reference)] += 1
    return out


def raw_agreement(confusion: np.ndarray) -> np.ndarray:
    """Share of items on which both raters give the same outcome (works on stacks [..., 3, 3])."""
    return _ratio(np.trace(confusion, axis1=-2, axis2=-1), confusion.sum(axis=(-2, -1)))


def tie_discounted_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Agreement where a tie against a decisive verdict scores half and opposite verdicts score zero.

    A judge that hedges with a tie is half right, one that picks the other side is wrong; with no
    ties on either side this equals raw agreement.
    """
    tie = OUTCOMES.index("tie")
    half = (
        confusion[..., tie, :].sum(axis=-1)
        + confusion[..., :, tie].sum(axis=-1)
        - 2 * confusion[..., tie, tie]
    )
    return _ratio(np.trace(confusion, axis1=-2, axis2=-1) + half / 2, confusion.sum(axis=(-2, -1)))


def cohen_kappa(confusion: np.ndarray) -> np.ndarray:
    """Cohen's kappa (p_o - p_e) / (1 - p_e); undefined (NaN) when chance agreement is 1."""
    total = confusion.sum(axis=(-2, -1))
    p_o = raw_agreement(confusion)
    p_e = _ratio((confusion.sum(axis=-1) * confusion.sum(axis=-2)).sum(axis=-1), total**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(p_e < 1, (p_o - p_e) / np.where(p_e < 1, 1 - p_e, 1), np.nan)
