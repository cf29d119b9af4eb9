"""Judgment units: what gets judged, in which order, and which pairs need no call at all.

A unit is (prompt_id, seed, order): order "AB" shows model A's answer in slot 1, "BA" model B's.
Policy `both` judges every pair in both orders; `single-seeded` judges one order per pair, chosen from
the instruction text as AlpacaEval's pairwise annotator does (how Jha et al. 2023 ran GPT-4). Pairs whose
answers are identical, or (under `auto-loss`) empty, are decided without a call and recorded as `no_call`,
never dropped. The records written for units are defined in `records.py`.
"""

from __future__ import annotations

from dataclasses import dataclass

from limit_foundry.errors import ConfigError
from limit_foundry.judge.inputs import Pair
from limit_foundry.judge.prompts import Slots, seeded_switches

ORDER_POLICIES = ("both", "single-seeded")
NO_CALL_OUTCOMES = {"identical": "tie", "empty_a": "B", "empty_b": "A", "empty_both": "tie"}


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
        raise ConfigError(f"unknown order policy {order_policy!r} (expected one of {ORDER_POLICIES})")
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
