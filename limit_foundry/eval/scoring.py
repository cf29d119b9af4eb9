"""Gauntlet scores from LLM Foundry's raw metrics, with nothing hidden.

Scoring follows the Eval Gauntlet as Jha et al. 2023 (LIMIT) report it: a benchmark with
subcategories is first averaged over them (equal weight); score = (accuracy - random_baseline) /
(1 - random_baseline); a category is the equal-weight mean of its benchmarks; an average is the plain mean of its categories. Unlike LLM Foundry's
EvalGauntlet callback, a benchmark without data or metrics is listed and its category marked
incomplete (its score is labelled partial), never silently dropped.

Raw metrics are LLM Foundry's own keys: `metrics/<label>/<n>-shot/<Metric>` and, for a benchmark
with subcategories, `metrics/<label>/<n>-shot/<subcategory>/<Metric>` (what eval logs); the order
`.../<Metric>/<subcategory>` is accepted too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from limit_foundry.errors import DataError
from limit_foundry.eval.config import Benchmark, Gauntlet

SCORED, MISSING_DATA, NO_METRICS = "scored", "missing_data", "no_metrics"
WRONG_SHOTS = "wrong_shots"  # metrics only at shot counts the Gauntlet does not score: kept, not scored


@dataclass
class ParsedMetrics:
    # (label, shots) -> subcategory (None without) -> value, for the benchmark's scored metric
    accuracy: dict[tuple[str, int], dict[str | None, float]] = field(default_factory=dict)
    examples: dict[tuple[str, int], int] = field(default_factory=dict)
    other: dict[str, float] = field(default_factory=dict)  # keys that are not a Gauntlet benchmark's accuracy
    # benchmark -> shot counts its accuracy came at that the Gauntlet does not score (those keys are in `other`)
    other_shots: dict[str, list[int]] = field(default_factory=dict)


def _split_key(key: str) -> tuple[str, int, list[str]] | None:
    parts = key.split("/")
    if len(parts) < 4 or parts[0] != "metrics" or not parts[2].endswith("-shot"):
        return None
    try:
        shots = int(parts[2][: -len("-shot")])
    except ValueError:
        return None
    return parts[1], shots, parts[3:]


def _value(key: str, value: Any, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise DataError(f"{source}: {key!r} must be a finite number, got {value!r}")
    return float(value)


def parse_raw_metrics(
    gauntlet: Gauntlet,
    raw: Mapping[str, Any],
    examples: Mapping[str, Any] | None = None,
    source: str = "raw metrics",
) -> ParsedMetrics:
    """Sort raw metric keys into each benchmark's accuracy (per subcategory) and everything else.

    An accuracy outside [0, 1] and an empty mapping are refused; an accuracy at a shot count the Gauntlet
    does not score is kept among the other metrics and noted in `other_shots`.
    """
    if not raw:
        raise DataError(f"{source}: no metrics (expected keys like metrics/<label>/<n>-shot/<Metric>)")
    shots_scored = {b.name: b.num_fewshot for b in gauntlet.benchmarks}
    parsed = ParsedMetrics()
    for key, value in raw.items():
        number = _value(key, value, source)
        split = _split_key(key)
        task = gauntlet.tasks.get(split[0]) if split else None
        subcategory: str | None = None
        matched = False
        if split and task is not None:
            label, shots, rest = split
            if rest == [task.metric]:
                matched = True
            elif len(rest) == 2 and task.metric in rest:
                subcategory = rest[0] if rest[1] == task.metric else rest[1]
                matched = True
        if matched and not 0.0 <= number <= 1.0:
            raise DataError(f"{source}: {key!r} is {number}: an accuracy must lie in [0, 1]")
        if matched and shots_scored.get(label) != shots:
            parsed.other_shots.setdefault(label, []).append(shots)
            matched = False
        if not matched:
            parsed.other[key] = number
            continue
        slot = parsed.accuracy.setdefault((label, shots), {})
        if subcategory in slot:
            raise DataError(f"{source}: {key!r} repeats a metric already given for {label}")
        slot[subcategory] = number
        if examples and key in examples:
            count = _value(key, examples[key], f"{source} (examples)")
            parsed.examples[(label, shots)] = parsed.examples.get((label, shots), 0) + int(count)
    for (label, shots), slot in parsed.accuracy.items():
        if None in slot and len(slot) > 1:
            raise DataError(f"{source}: {label}/{shots}-shot has both an overall value and subcategories")
    return parsed


def rescale(accuracy: float, benchmark: Benchmark, gauntlet: Gauntlet) -> float:
    score = accuracy
    if gauntlet.subtract_random_baseline:
        score -= benchmark.random_baseline
        if gauntlet.rescale_accuracy:
            score /= 1.0 - benchmark.random_baseline
    return score


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _benchmark_result(
    benchmark: Benchmark, gauntlet: Gauntlet, parsed: ParsedMetrics, missing_data: set[str]
) -> dict[str, Any]:
    key = (benchmark.name, benchmark.num_fewshot)
    result: dict[str, Any] = {
        "name": benchmark.name,
        "category": benchmark.category,
        "num_fewshot": benchmark.num_fewshot,
        "random_baseline": benchmark.random_baseline,
        "metric": gauntlet.tasks[benchmark.name].metric,
        "status": SCORED,
        "accuracy": None,
        "score": None,
        "n_examples": parsed.examples.get(key),
    }
    if benchmark.name in missing_data:
        result["status"] = MISSING_DATA
    elif key not in parsed.accuracy and benchmark.name in parsed.other_shots:
        result["status"] = WRONG_SHOTS
        result["found_at_shots"] = sorted(set(parsed.other_shots[benchmark.name]))
    elif key not in parsed.accuracy:
        result["status"] = NO_METRICS
    else:
        slot = parsed.accuracy[key]
        if None not in slot:
            result["subcategories"] = dict(sorted(slot.items()))
        result["accuracy"] = _mean(slot.values())
        result["score"] = rescale(result["accuracy"], benchmark, gauntlet)
    return result


def _missing(result: dict[str, Any]) -> dict[str, Any]:
    """Why a benchmark is not scored, with the shot counts its metrics came at when those were wrong."""
    entry = {"name": result["name"], "reason": result["status"]}
    if "found_at_shots" in result:
        entry["found_at_shots"] = result["found_at_shots"]
        entry["num_fewshot"] = result["num_fewshot"]
    return entry


def wrong_shot_notes(model: dict[str, Any]) -> list[str]:
    """One line per benchmark of a scored model whose metrics came only at shot counts the Gauntlet does
    not score."""
    return [
        f"{model['model_id']}: {b['name']} has metrics at {', '.join(f'{n}-shot' for n in b['found_at_shots'])}; "
        f"the Gauntlet scores it at {b['num_fewshot']}-shot: not scored (kept under other_metrics)"
        for b in model["benchmarks"]
        if b["status"] == WRONG_SHOTS
    ]


def score_model(
    gauntlet: Gauntlet, parsed: ParsedMetrics, model_id: str, missing_data: Iterable[str] = ()
) -> dict[str, Any]:
    """One model's benchmarks, categories and averages; incomplete parts are flagged, not dropped."""
    missing = set(missing_data)
    benchmarks = [_benchmark_result(b, gauntlet, parsed, missing) for b in gauntlet.benchmarks]
    categories: dict[str, dict[str, Any]] = {}
    for name, members in gauntlet.categories.items():
        rows = [r for r in benchmarks if r["category"] == name]
        scored = [r for r in rows if r["status"] == SCORED]
        complete = len(scored) == len(rows)
        categories[name] = {
            "score": _mean(r["score"] for r in scored),
            "complete": complete,
            "benchmarks_scored": len(scored),
            "benchmarks_total": len(members),
            "missing": [_missing(r) for r in rows if r["status"] != SCORED],
            "label": "complete" if complete else f"partial: {len(scored)} of {len(rows)} benchmarks",
        }
    averages: dict[str, dict[str, Any]] = {}
    for name, members in gauntlet.averages.items():
        with_score = [c for c in members if categories[c]["score"] is not None]
        complete = all(categories[c]["complete"] for c in members)
        incomplete = [c for c in members if not categories[c]["complete"]]
        averages[name] = {
            "score": _mean(categories[c]["score"] for c in with_score),
            "complete": complete,
            "categories": list(members),
            "incomplete_categories": incomplete,
            "label": "complete" if complete else f"partial: {len(incomplete)} incomplete categories",
        }
    return {
        "model_id": model_id,
        "benchmarks": benchmarks,
        "categories": categories,
        "averages": averages,
        "other_metrics": dict(sorted(parsed.other.items())),
    }
