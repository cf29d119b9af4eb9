"""The length-controlled win rate against AlpacaEval's own `get_length_controlled_winrate`, and on synthetic
judges whose length effect is known."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from limit_foundry.errors import DataError
from limit_foundry.judge.length_control import MIN_PAIRS, length_controlled, load_instruction_difficulty
from limit_foundry.judge.stats import PairVerdict, bootstrap_weights

SEEDS = ("1", "2", "3")
PROMPTS = [f"p{i:03d}" for i in range(300)]

# AlpacaEval's own function, run unchanged in a fresh interpreter with the Hugging Face hub offline and a local
# cache holding the one file it reads (df_gamed.csv: per-instruction difficulty by annotation index).
ALPACA_EVAL_LC = """
import json, sys
import pandas as pd
from alpaca_eval.metrics.glm_winrate import get_length_controlled_winrate
annotations = json.load(open(sys.argv[1]))
glm_name = sys.argv[2]
metrics = get_length_controlled_winrate(
    pd.DataFrame(annotations), glm_name=glm_name, save_weights_dir=None, is_warn_extreme_changes=False
)
print(json.dumps({"lc": metrics["length_controlled_winrate"] / 100, "win_rate": metrics["win_rate"] / 100}))
"""


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def synthetic_pairs(p_b_wins, b_length_scale: float, rng_seed: int = 0) -> list[PairVerdict]:
    """Decisive verdicts from a judge whose P(B wins) is p_b_wins(len_a, len_b)."""
    rng = np.random.default_rng(rng_seed)
    pairs = []
    for seed in SEEDS:
        for prompt in PROMPTS:
            len_a = int(rng.integers(100, 2000))
            len_b = int(rng.integers(100, 2000) * b_length_scale)
            b_wins = rng.random() < p_b_wins(len_a, len_b)
            pairs.append(
                PairVerdict(prompt, seed, (0.0, 0.0, 1.0) if b_wins else (1.0, 0.0, 0.0), None, len_a, len_b)
            )
    return pairs


def raw_win_rate(pairs: list[PairVerdict]) -> float:
    return float(np.mean([p.votes[2] for p in pairs if p.votes]))


def no_interval() -> np.ndarray:
    return np.zeros((0, len(PROMPTS)))


def longer_wins_judge(len_a: int, len_b: int) -> float:
    return float(_logistic(4 * np.tanh((len_b - len_a) / 500)))


def test_a_judge_that_prefers_the_longer_answer_gives_lc_near_half():
    pairs = synthetic_pairs(longer_wins_judge, b_length_scale=1.5)  # B's answers are 1.5x longer
    result = length_controlled(pairs, PROMPTS, SEEDS, no_interval())
    assert raw_win_rate(pairs) > 0.62
    assert result.win_rate == pytest.approx(0.5, abs=0.05)
    assert result.length_weight < -2  # AlpacaEval's delta is len(A) - len(B): longer B, higher preference
    assert set(result.per_seed) == set(SEEDS)


def test_a_judge_that_prefers_one_model_regardless_of_length_gives_lc_near_raw():
    pairs = synthetic_pairs(lambda a, b: 0.8, b_length_scale=1.5)
    result = length_controlled(pairs, PROMPTS, SEEDS, no_interval())
    assert result.win_rate == pytest.approx(raw_win_rate(pairs), abs=0.03)
    assert abs(result.length_weight) < 0.5


def test_lc_recovers_the_model_term_when_both_effects_are_present():
    # P(B wins) = logistic(log 4 + 2 tanh(...)): 0.8 at equal length, more when B is longer
    pairs = synthetic_pairs(lambda a, b: float(_logistic(np.log(4) + 2 * np.tanh((b - a) / 500))), 1.5)
    result = length_controlled(pairs, PROMPTS, SEEDS, no_interval())
    assert result.win_rate == pytest.approx(0.8, abs=0.04)
    assert result.length_weight < -1


def _alpaca_eval_lc(tmp_path: Path, annotations: list[dict], difficulty: list[float], glm_name: str) -> dict:
    revision = "0" * 40
    repo = tmp_path / "hub" / "datasets--tatsu-lab--alpaca_eval"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    lines = ["model,index,instruction_difficulty"] + [f"m,{i},{d!r}" for i, d in enumerate(difficulty)]
    (snapshot / "df_gamed.csv").write_text("\n".join(lines) + "\n")
    data = tmp_path / "annotations.json"
    data.write_text(json.dumps(annotations))
    env = os.environ | {
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "PYTHONWARNINGS": "ignore",
    }
    done = subprocess.run(
        [sys.executable, "-c", ALPACA_EVAL_LC, str(data), glm_name],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("form", ["minimal", "full"])
def test_matches_alpaca_evals_own_length_controlled_winrate(tmp_path, form):
    rng = np.random.default_rng(3)
    n = 200
    difficulty = rng.normal(size=n).tolist()
    annotations, pairs = [], []
    for i in range(n):
        len_1, len_2 = int(rng.integers(50, 1500)), int(rng.integers(50, 2500))
        p = _logistic(0.7 + 1.5 * np.tanh((len_2 - len_1) / 600) - 0.8 * difficulty[i])
        preference = 2 if rng.random() < p else 1
        annotations.append(
            {
                "instruction": f"q{i}",
                "output_1": "x" * len_1,
                "output_2": "y" * len_2,
                "generator_1": "base",
                "generator_2": "model",
                "annotator": "a",
                "preference": preference,
            }
        )
        votes = (0.0, 0.0, 1.0) if preference == 2 else (1.0, 0.0, 0.0)
        pairs.append(PairVerdict(f"q{i}", "1", votes, None, len_1, len_2))
    glm_name = {"minimal": "length_controlled_minimal", "full": "length_controlled_noreg"}[form]
    theirs = _alpaca_eval_lc(tmp_path, annotations, difficulty, glm_name)
    by_prompt = {f"q{i}": d for i, d in enumerate(difficulty)} if form == "full" else None
    ours = length_controlled(
        pairs, sorted(p.prompt_id for p in pairs), ["1"], np.zeros((0, n)), difficulty=by_prompt
    )
    assert ours.form == form
    assert ours.win_rate == pytest.approx(theirs["lc"], abs=1e-9)
    assert raw_win_rate(pairs) == pytest.approx(theirs["win_rate"], abs=1e-9)


def test_draws_and_failures_are_dropped_and_counted_and_the_ci_covers_the_rate():
    pairs = synthetic_pairs(lambda a, b: 0.7, b_length_scale=1.0)[:300]  # seed 1 only
    pairs[0] = PairVerdict(pairs[0].prompt_id, "1", (0.0, 1.0, 0.0), None, 10, 20)  # a draw
    pairs[1] = PairVerdict(pairs[1].prompt_id, "1", None, "no_verdict", 10, 20)
    pairs[2] = PairVerdict(pairs[2].prompt_id, "1", (1.0, 0.0, 0.0), None, None, None)
    result = length_controlled(pairs, PROMPTS, ["1"], bootstrap_weights(len(PROMPTS), 30, 0))
    assert result.dropped == {"draws": 1, "failed": 1, "missing_length": 1}
    assert result.fitted_pairs == 297
    assert result.ci[0] <= result.win_rate <= result.ci[1]
    assert result.rounded().as_json()["ci"] == [round(x, 6) for x in result.ci]


def test_a_seed_with_too_few_decisive_pairs_has_no_lc_and_says_so():
    pairs = [PairVerdict(f"p{i}", "1", (0.0, 0.0, 1.0), None, 10, 20 + i) for i in range(MIN_PAIRS - 1)]
    result = length_controlled(
        pairs, [f"p{i}" for i in range(MIN_PAIRS - 1)], ["1"], np.zeros((0, MIN_PAIRS - 1))
    )
    assert result.win_rate is None and result.per_seed == {"1": None}
    assert "fewer than" in result.notes[0]


def test_one_side_winning_everything_gives_its_limit_without_a_degenerate_fit():
    pairs = [PairVerdict(f"p{i}", "1", (0.0, 0.0, 1.0), None, 10, 20 + i) for i in range(20)]
    prompts = [p.prompt_id for p in pairs]
    result = length_controlled(pairs, prompts, ["1"], bootstrap_weights(20, 10, 0))
    assert result.win_rate == 1.0 and result.ci == [1.0, 1.0]


def test_full_form_needs_a_difficulty_for_every_prompt():
    pairs = synthetic_pairs(lambda a, b: 0.5, 1.0)[:20]
    with pytest.raises(DataError, match="no instruction difficulty for 19 prompt"):
        length_controlled(pairs, PROMPTS, ["1"], no_interval(), difficulty={"p000": 0.1})


def test_difficulty_files_csv_and_json_and_errors_name_the_line(tmp_path):
    good = tmp_path / "d.csv"
    good.write_text("prompt_id,instruction_difficulty\na,0.5\nb,-1\n")
    assert load_instruction_difficulty(good) == {"a": 0.5, "b": -1.0}
    as_json = tmp_path / "d.json"
    as_json.write_text(json.dumps({"a": 1, "b": 2.5}))
    assert load_instruction_difficulty(as_json) == {"a": 1.0, "b": 2.5}
    bad = tmp_path / "bad.csv"
    bad.write_text("instruction,instruction_difficulty\nq,1\nr,hard\n")
    with pytest.raises(DataError, match=r"bad\.csv:3: instruction_difficulty 'hard' is not a number"):
        load_instruction_difficulty(bad)
    no_key = tmp_path / "nokey.csv"
    no_key.write_text("id,instruction_difficulty\nq,1\n")
    with pytest.raises(DataError, match=r"nokey\.csv:1: needs columns"):
        load_instruction_difficulty(no_key)


def test_a_missing_difficulty_file_is_a_data_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"nowhere\.csv: cannot read"):
        load_instruction_difficulty(tmp_path / "nowhere.csv")
