"""Build result directories that follow the judge's data contract, for the report-side tests.

Written with the same JsonlAppender `run` uses, so the files look exactly like a real run's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from limit_foundry.io import JsonlAppender, atomic_write_json

_SLOT = {("AB", "A"): 1, ("AB", "B"): 2, ("BA", "B"): 1, ("BA", "A"): 2}


def unit(
    prompt_id: str,
    seed: int,
    order: str,
    outcome: str | None,
    *,
    status: str = "ok",
    failure: str | None = None,
    no_call_reason: str | None = None,
    len_a: int = 10,
    len_b: int = 20,
    generator_a: str = "model-a",
    generator_b: str = "model-b",
    cost_usd: float = 0.001,
) -> dict[str, Any]:
    """One judgments.jsonl record; slot_outcome is derived from the order as the contract defines it."""
    slot = None
    if status == "ok":
        slot = 0 if outcome == "tie" else _SLOT[(order, outcome)]
    return {
        "key": f"{prompt_id}|{seed}|{order}",
        "prompt_id": prompt_id,
        "seed": seed,
        "instruction": f"Question {prompt_id}?",
        "order": order,
        "generator_a": generator_a,
        "generator_b": generator_b,
        "status": status,
        "outcome": outcome if status != "failed" else None,
        "slot_outcome": slot,
        "no_call_reason": no_call_reason,
        "failure": failure,
        "len_a": len_a,
        "len_b": len_b,
        "template": "pairwise",
        "template_hash": "abc123",
        "judge_model": "fake-judge",
        "usage": {"prompt_tokens": 100, "completion_tokens": 10} if status == "ok" else None,
        "cost_usd": cost_usd if status == "ok" else 0.0,
        "cached": False,
        "raw": None if status != "ok" else f"verdict {slot}",
    }


def single_units(outcomes: list[str], seed: int = 0, **kwargs: Any) -> list[dict[str, Any]]:
    """One AB unit per prompt p0, p1, ... with the given outcomes (single-seeded policy)."""
    return [unit(f"p{i}", seed, "AB", o, **kwargs) for i, o in enumerate(outcomes)]


def write_result_dir(
    path: Path, units: list[dict[str, Any]], order_policy: str | None = "single-seeded", **run: Any
) -> Path:
    """judgments.jsonl (append-only) and run.json, as `run` leaves them."""
    path.mkdir(parents=True, exist_ok=True)
    with JsonlAppender(path / "judgments.jsonl", fsync=False) as log:
        for record in units:
            log.write(record)
    if order_policy is not None:
        atomic_write_json(
            path / "run.json",
            {
                "order_policy": order_policy,
                "judge_model": "fake-judge",
                "template": "pairwise",
                "partial": False,
            }
            | run,
        )
    return path
