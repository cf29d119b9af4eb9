"""Length-controlled (LC) win rates, as AlpacaEval 2.0 defines them (Dubois et al. 2024, "Length-Controlled
AlpacaEval"): a logistic GLM of the judge's preference for B on tanh(normalised length difference) plus a model
term (and, in the full form, the instruction's difficulty), read off at zero length difference. It answers "how
often would B win if both answers were equally long?"; with no length effect it equals the plain win rate.

The featurisation follows AlpacaEval's `glm_winrate._get_featurized_data` (length = characters, delta =
len(A) - len(B) divided by its standard deviation over the fitted pairs, preference in [0, 1]) and the fit is
AlpacaEval's own `make_dmatrix_for_model` and `fit_LogisticRegressionCV` with the formulas of its `GLM_INFO`.
AlpacaEval's `get_length_controlled_winrate` itself is not called: it downloads per-instruction difficulties (and
annotations of "gamed" baselines) that exist only for AlpacaEval's own 805 instructions. Here nothing is
downloaded: the `minimal` form (length term + model term) needs no difficulty; the `full` form
(`length_controlled_noreg`: + instruction difficulty) takes difficulties given locally (AlpacaEval's v1 form also
regularises towards the gamed baselines, which are not available offline).

Draws and non-verdicts are treated as the paper's win rate treats them (Jha et al. 2023 (LIMIT): B's wins over
A's wins plus B's wins): they are left out of the fit and counted. AlpacaEval would fit a draw as preference 0.5;
dropping it keeps "LC with no length effect" equal to the rate the paper quotes. A pair with fractional votes
(both orders judged, `split`) is fitted with its decisive share b / (a + b), weighted by a + b.

Like the paper's rate, LC is computed per generation seed and then averaged over seeds. The confidence interval
resamples prompts (the caller's bootstrap weight matrix, so it moves with every other interval of the report);
each replicate refits the GLM at the regularisation strength the cross-validated point fit chose.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from limit_foundry.errors import DataError
from limit_foundry.judge.stats import PairVerdict, json_number, percentile_ci

FORMS = {"minimal": "length_controlled_minimal", "full": "length_controlled_noreg"}
N_SPLITS = 5  # AlpacaEval's cross-validation folds (GLM_INFO kwargs)
MIN_PAIRS = 2 * N_SPLITS  # fewer decisive pairs in a seed give no LC for that seed
MEANING = (
    "LC = length-controlled win rate (AlpacaEval 2.0): B's win rate predicted by a logistic fit of the verdicts "
    "on the answers' length difference, read off at equal length; near the raw rate when length did not "
    "sway the judge, towards 0.5 when it did"
)


@dataclass(frozen=True)
class LengthControlled:
    """The LC win rate of one comparison (one order combination) and how it was obtained."""

    form: str  # "minimal" or "full"
    win_rate: float | None  # mean over seeds of the per-seed LC rate
    ci: list[float | None] | None
    per_seed: dict[str, float | None]
    length_weight: float | None  # mean over seeds of the tanh(std delta len) coefficient (< 0: longer B wins)
    fitted_pairs: int
    dropped: dict[str, int]  # draws, failed (no verdict), missing_length
    notes: list[str]

    def rounded(self) -> LengthControlled:
        """The numbers rounded as every reported number is (`stats.json_number`): reports stay stable byte for
        byte."""
        return replace(
            self,
            win_rate=json_number(self.win_rate),
            ci=[json_number(x) for x in self.ci] if self.ci else None,
            per_seed={seed: json_number(rate) for seed, rate in self.per_seed.items()},
            length_weight=json_number(self.length_weight),
        )

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _SeedFit:
    """One seed's decisive pairs as a design matrix, and the GLM fitted to them."""

    prompt_index: np.ndarray  # row -> index into the caller's prompt list
    train: Any  # pandas DataFrame: design matrix plus "preference"
    test: Any  # design matrix at zero length difference
    weight: np.ndarray  # decisive votes per row (a + b)
    C: float
    rate: float
    length_weight: float


def _difficulty_rows(path: Path) -> list[tuple[str, Any, Any]]:
    """(where, prompt key, raw difficulty) per entry of a difficulty file."""
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg})") from err
        if not isinstance(data, dict):
            raise DataError(f"{path}: expected a JSON object mapping prompt ids to difficulties")
        return [(f"{path}: key {key!r}", key, value) for key, value in data.items()]
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        key_field = next((f for f in ("prompt_id", "instruction") if f in fields), None)
        if key_field is None or "instruction_difficulty" not in fields:
            raise DataError(
                f"{path}:1: needs columns instruction_difficulty and prompt_id or instruction, got {fields}"
            )
        return [
            (f"{path}:{line}", row[key_field], row["instruction_difficulty"])
            for line, row in enumerate(reader, start=2)
        ]


def load_instruction_difficulty(path: str | Path) -> dict[str, float]:
    """Per-prompt difficulties for the full form: a JSON object {prompt id or instruction: number}, or a CSV
    with an `instruction_difficulty` column and a `prompt_id` or `instruction` column."""
    path = Path(path)
    try:
        rows = _difficulty_rows(path)
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from err
    out: dict[str, float] = {}
    for where, key, value in rows:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise DataError(f"{where}: instruction_difficulty {value!r} is not a number") from None
        if not math.isfinite(number):
            raise DataError(f"{where}: instruction_difficulty {value!r} is not finite")
        out[str(key)] = number
    if not out:
        raise DataError(f"{path}: no instruction difficulties")
    return out


@contextmanager
def _without_sklearn_deprecation_warnings() -> Iterator[None]:
    """alpaca_eval's fitting code passes scikit-learn arguments that newer scikit-learn releases deprecate; the
    warnings (one set per fit) say nothing about the fit. Convergence warnings still show."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="Inconsistent values: penalty", category=UserWarning)
        yield


def _fit_seed(
    pairs: Sequence[PairVerdict],
    prompt_index: Mapping[str, int],
    difficulty: Mapping[str, float] | None,
    dropped: Counter[str],
) -> _SeedFit | None:
    """Featurise one seed's pairs as AlpacaEval does and fit its GLM with cross-validation."""
    rows = []
    for pair in pairs:
        if pair.votes is None:
            dropped["failed"] += 1
            continue
        a, _, b = pair.votes
        if a + b == 0:
            dropped["draws"] += 1
            continue
        if pair.len_a is None or pair.len_b is None:
            dropped["missing_length"] += 1
            continue
        rows.append(
            (prompt_index[pair.prompt_id], b / (a + b), a + b, pair.len_a - pair.len_b, pair.prompt_id)
        )
    if len(rows) < MIN_PAIRS:
        return None
    import pandas as pd  # heavy imports (alpaca_eval's costs seconds): only once a seed has enough pairs to fit
    from alpaca_eval.metrics.glm_winrate import GLM_INFO, fit_LogisticRegressionCV, make_dmatrix_for_model

    index, preference, weight, delta, prompt_ids = map(np.array, zip(*rows, strict=True))
    spread = delta.std(ddof=1)  # pandas' std, as AlpacaEval's featurisation uses
    frame = pd.DataFrame(
        {
            "preference": preference.astype(float),
            "std_delta_len": delta / spread if spread > 0 else np.zeros(len(delta)),
            "not_gamed_baseline": True,
        }
    )
    if difficulty is not None:
        frame["instruction_difficulty"] = [difficulty[p] for p in prompt_ids]
    test = frame.drop(columns=["preference"]).assign(std_delta_len=0.0)
    if np.ptp(preference) == 0:  # one side won every decisive pair: the GLM's limit, without a degenerate fit
        return _SeedFit(index.astype(int), frame, test, weight.astype(float), 1.0, float(preference[0]), 0.0)
    formula = GLM_INFO[FORMS["full" if difficulty is not None else "minimal"]]["formula"]
    train, design_test = make_dmatrix_for_model(frame, test, formula=formula)
    sample_weight = None if np.all(weight == 1) else weight.astype(float)
    with _without_sklearn_deprecation_warnings():
        model = fit_LogisticRegressionCV(
            train, "preference", is_ytrue_proba=True, n_splits=N_SPLITS, sample_weight=sample_weight
        )
    coefficients = dict(zip(design_test.columns, model.coef_[0], strict=True))
    return _SeedFit(
        prompt_index=index.astype(int),
        train=train,
        test=design_test,
        weight=weight.astype(float),
        C=float(model.C_[0]),
        rate=float(np.average(model.predict_proba(design_test)[:, 1], weights=weight)),
        length_weight=float(coefficients["np.tanh(std_delta_len)"]),
    )


def _refit_rate(fit: _SeedFit, multiplicity: np.ndarray) -> float:
    """The LC rate of one bootstrap replicate: the rows of each resampled prompt weighted by its multiplicity."""
    row_weight = multiplicity[fit.prompt_index] * fit.weight
    keep = row_weight > 0
    if keep.sum() < 2:
        return math.nan
    kept = fit.train["preference"].to_numpy()[keep]
    if np.ptp(kept) == 0:  # one side won every resampled pair (as in `_fit_seed`)
        return float(kept[0])
    from alpaca_eval.metrics.glm_winrate import fit_LogisticRegressionCV

    with _without_sklearn_deprecation_warnings():
        model = fit_LogisticRegressionCV(
            fit.train[keep],
            "preference",
            is_ytrue_proba=True,
            n_splits=0,
            C=fit.C,
            sample_weight=row_weight[keep],
        )
    return float(np.average(model.predict_proba(fit.test[keep])[:, 1], weights=row_weight[keep]))


def length_controlled(
    pairs: Sequence[PairVerdict],
    prompts: Sequence[str],
    seeds: Sequence[str],
    bootstrap_weights: np.ndarray,
    level: float = 0.95,
    difficulty: Mapping[str, float] | None = None,
) -> LengthControlled:
    """LC win rate of B per seed, its mean over seeds, and a bootstrap CI over prompts.

    bootstrap_weights is [resample, prompt] (multiplicities over `prompts`, as `stats.bootstrap_weights`
    draws them); pass a matrix with zero rows to skip the interval.
    """
    if difficulty is not None:
        missing = sorted({p.prompt_id for p in pairs} - difficulty.keys())
        if missing:
            raise DataError(
                f"no instruction difficulty for {len(missing)} prompt(s), e.g. {missing[0][:80]!r}: "
                "the full LC form needs one for every judged prompt"
            )
    prompt_index = {p: i for i, p in enumerate(prompts)}
    dropped: Counter[str] = Counter()
    notes = []
    fits: dict[str, _SeedFit | None] = {}
    for seed in seeds:
        fits[seed] = _fit_seed([p for p in pairs if p.seed == seed], prompt_index, difficulty, dropped)
        if fits[seed] is None:
            notes.append(f"seed {seed}: fewer than {MIN_PAIRS} decisive pairs with lengths, no LC")
    fitted = [f for f in fits.values() if f is not None]
    ci = None
    if fitted and len(bootstrap_weights):
        replicates = np.array([[_refit_rate(f, w) for f in fitted] for w in bootstrap_weights])
        interval = percentile_ci(
            replicates.mean(axis=1), level
        )  # a replicate with an undefined seed is skipped
        ci = list(interval) if interval else None
    return LengthControlled(
        form="full" if difficulty is not None else "minimal",
        win_rate=float(np.mean([f.rate for f in fitted])) if fitted else None,
        ci=ci,
        per_seed={seed: (f.rate if f else None) for seed, f in fits.items()},
        length_weight=float(np.mean([f.length_weight for f in fitted])) if fitted else None,
        fitted_pairs=sum(len(f.weight) for f in fitted),
        dropped={k: dropped[k] for k in ("draws", "failed", "missing_length")},
        notes=notes,
    )
