"""Judgment units and the judgments.jsonl records written for them (the judge's data contract).

A unit is (prompt_id, seed, order): order "AB" shows model A's answer in slot 1, "BA" model B's.
Policy `both` judges every pair in both orders; `single-seeded` judges one order per pair, chosen as
AlpacaEval does from the instruction text (LIMIT_FACTS §3). Pairs whose answers are identical, or
(under `auto-loss`) empty, are decided without a call and recorded as `no_call`, never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from limit_foundry.judge.inputs import Pair
from limit_foundry.judge.prompts import Slots, Template, seeded_switches
from limit_foundry.judge.stats import flip

ORDER_POLICIES = ("both", "single-seeded")
# Failures that a new call would most likely repeat (recorded; retried only on request) ...
FINAL_FAILURES = ("parse_error", "refusal", "truncated", "context_length")
# ... and those a later attempt can cure (retried whenever the run is resumed).
TRANSIENT_FAILURES = ("retries_exhausted", "server_error", "budget")
NO_CALL_OUTCOMES = {"identical": "tie", "empty_a": "B", "empty_b": "A", "empty_both": "tie"}
_SLOT_WINNERS = {1: "A", 2: "B", 0: "tie"}  # in order AB; order BA flips the models


@dataclass(frozen=True)
class Unit:
    pair: Pair
    order: str
    no_call_reason: str | None

    @property
    def key(self) -> str:
        return f"{self.pair.prompt_id}|{self.pair.seed}|{self.order}"

    @property
    def slots(self) -> Slots:
        p = self.pair
        first, second = (p.output_a, p.output_b) if self.order == "AB" else (p.output_b, p.output_a)
        return Slots(p.instruction, first, second)


def no_call_reason(pair: Pair, empty_policy: str) -> str | None:
    """Why this pair needs no judge call, if it needs none."""
    empty_a, empty_b = not pair.output_a.strip(), not pair.output_b.strip()
    if empty_policy == "auto-loss" and (empty_a or empty_b):
        return "empty_both" if empty_a and empty_b else ("empty_a" if empty_a else "empty_b")
    if pair.output_a == pair.output_b:
        return "identical"
    return None


def plan_units(pairs: list[Pair], order_policy: str, empty_policy: str, order_seed: int) -> list[Unit]:
    if order_policy not in ORDER_POLICIES:
        raise ValueError(f"unknown order policy {order_policy!r} (expected one of {ORDER_POLICIES})")
    if order_policy == "both":
        orders = [("AB", "BA")] * len(pairs)
    else:
        switched = seeded_switches([p.instruction for p in pairs], order_seed)
        orders = [("BA",) if s else ("AB",) for s in switched]
    return [
        Unit(pair, order, no_call_reason(pair, empty_policy))
        for pair, pair_orders in zip(pairs, orders, strict=True)
        for order in pair_orders
    ]


def outcome_of(order: str, slot: int | None) -> str | None:
    """The model a slot verdict favours: slot 1 holds A's answer in order AB and B's in order BA."""
    if slot is None:
        return None
    winner = _SLOT_WINNERS[slot]
    return flip(winner) if order == "BA" else winner


def read_verdict(
    template: Template, text: str | None, finish_reason: str | None, refusal: str | None
) -> tuple[int | None, str | None]:
    """(slot verdict, failure): a refusal is a refusal; a reply without a verdict is truncated when the
    judge ran out of tokens, else a parse error. A verdict found in a cut-off reply still counts."""
    if refusal or finish_reason == "content_filter":
        return None, "refusal"
    slot = template.parse(text or "")
    if slot is not None:
        return slot, None
    return None, ("truncated" if finish_reason == "length" else "parse_error")


def base_record(unit: Unit, template: Template, judge_model: str) -> dict[str, Any]:
    p = unit.pair
    return {
        "key": unit.key,
        "prompt_id": p.prompt_id,
        "seed": p.seed,
        "instruction": p.instruction,
        "order": unit.order,
        "generator_a": p.generator_a,
        "generator_b": p.generator_b,
        "len_a": len(p.output_a),
        "len_b": len(p.output_b),
        "template": template.name,
        "template_hash": template.template_hash,
        "parser_hash": template.parser_hash,
        "judge_model": judge_model,
        "status": None,
        "outcome": None,
        "slot_outcome": None,
        "no_call_reason": None,
        "failure": None,
        "error": None,
        "usage": None,
        "cost_usd": 0.0,
        "cached": False,
        "raw": None,
        "finish_reason": None,
        "refusal": None,
        "request_key": None,
    }


def no_call_record(unit: Unit, template: Template, judge_model: str) -> dict[str, Any]:
    reason = unit.no_call_reason
    assert reason is not None
    return base_record(unit, template, judge_model) | {
        "status": "no_call",
        "outcome": NO_CALL_OUTCOMES[reason],
        "no_call_reason": reason,
    }


def with_verdict(record: dict[str, Any], template: Template, order: str) -> dict[str, Any]:
    """Fill status/outcome/failure from the stored raw reply (used for new replies and re-parsing)."""
    slot, failure = read_verdict(template, record["raw"], record["finish_reason"], record["refusal"])
    return record | {
        "status": "ok" if failure is None else "failed",
        "slot_outcome": slot,
        "outcome": outcome_of(order, slot),
        "failure": failure,
        "parser_hash": template.parser_hash,
    }


def reply_record(
    unit: Unit,
    template: Template,
    judge_model: str,
    *,
    text: str | None,
    finish_reason: str | None,
    refusal: str | None,
    usage: dict[str, int] | None,
    cost_usd: float,
    cached: bool,
    request_key: str,
) -> dict[str, Any]:
    record = base_record(unit, template, judge_model) | {
        "raw": text,
        "finish_reason": finish_reason,
        "refusal": refusal,
        "usage": usage,
        "cost_usd": round(cost_usd, 8),
        "cached": cached,
        "request_key": request_key,
    }
    return with_verdict(record, template, unit.order)


def failed_record(
    unit: Unit, template: Template, judge_model: str, failure: str, error: str, request_key: str | None
) -> dict[str, Any]:
    return base_record(unit, template, judge_model) | {
        "status": "failed",
        "failure": failure,
        "error": error,
        "request_key": request_key,
    }


def needs_reparse(record: dict[str, Any], template: Template) -> bool:
    """A stored reply that was read by another version of the template's parser."""
    return record.get("raw") is not None and record.get("parser_hash") != template.parser_hash


def needs_call(record: dict[str, Any] | None, retry_failed: bool) -> bool:
    if record is None:
        return True
    if record["status"] != "failed":
        return False
    return retry_failed or record.get("failure") in TRANSIENT_FAILURES
