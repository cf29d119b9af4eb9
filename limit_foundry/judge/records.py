"""The judgment-record contract: a result directory's files, the record `run` writes per unit, its writers
and its validator, in one place.

A result directory holds:

- `judgments.jsonl`: one `JudgmentRecord` per line, appended and flushed as each unit is decided. The log
  is append-only, so a key may appear several times (a failure retried after a resume, a stored reply
  re-parsed by a newer parser): the last line of a key wins.
- `run.json`: the run's configuration, identity and summary, rewritten atomically.
- `batch_state.json`: the Batch API batches this directory created (Batch API runs only).
- `.run.lock`: held while a `run` writes the directory.

A verdict is kept twice: `slot_outcome` is what the judge said about the slots (1 = the answer shown
first won, 2 = the second, 0 = tie) and `outcome` is what that means for the models (A, B or tie) given
the order the unit showed them in; the validator checks that the two agree.
"""

from __future__ import annotations

from typing import Any, TypedDict

from limit_foundry.errors import DataError
from limit_foundry.judge.prompts import Template
from limit_foundry.judge.stats import flip
from limit_foundry.judge.units import NO_CALL_OUTCOMES, Unit

JUDGMENTS = "judgments.jsonl"
RUN_JSON = "run.json"
BATCH_STATE = "batch_state.json"
LOCK = ".run.lock"

ORDERS = ("AB", "BA")
STATUSES = ("ok", "no_call", "failed")
OUTCOMES = ("A", "B", "tie")
# Failures that a new call would most likely repeat (recorded; retried only on request) ...
FINAL_FAILURES = ("parse_error", "refusal", "truncated", "context_length")
# ... and those a later attempt can cure (retried whenever the run is resumed).
TRANSIENT_FAILURES = ("retries_exhausted", "server_error", "budget")
# The fields a reader needs; older result directories and hand-made ones may lack the others.
REQUIRED_FIELDS = ("key", "prompt_id", "seed", "order", "status", "outcome")
_SLOT_WINNERS = {1: "A", 2: "B", 0: "tie"}  # in order AB; order BA flips the models


class _JudgmentRecordFields(TypedDict):
    key: str  # "prompt_id|seed|order"
    prompt_id: str
    seed: int
    instruction: str
    order: str  # "AB": A's answer in slot 1; "BA": B's
    generator_a: str
    generator_b: str
    len_a: int  # characters of A's answer
    len_b: int
    template: str
    template_hash: str  # what the judge is sent
    parser_hash: str  # how its reply is read
    judge_model: str
    status: str | None  # ok, no_call or failed
    outcome: str | None  # A, B or tie; None when failed
    slot_outcome: int | None  # 1, 2 or 0 (tie); ok units only
    no_call_reason: str | None  # identical, empty_a, empty_b, empty_both
    failure: str | None  # one of FINAL_FAILURES or TRANSIENT_FAILURES (or a reader's `missing_unit`)
    error: str | None  # the failure's detail
    usage: dict[str, int] | None  # prompt_tokens, completion_tokens
    cost_usd: float
    cached: bool  # answered from the response cache (cost 0)
    raw: str | None  # the judge's reply text
    finish_reason: str | None
    refusal: str | None
    request_key: str | None  # the response cache key


class JudgmentRecord(_JudgmentRecordFields, total=False):
    """One line of judgments.jsonl."""

    reparsed: bool  # a stored reply read again by a newer parser; its cost was counted on its first line


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


# ---- writers ----
def base_record(unit: Unit, template: Template, judge_model: str) -> JudgmentRecord:
    """A record of `unit` with every field present and nothing decided yet."""
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


def no_call_record(unit: Unit, template: Template, judge_model: str) -> JudgmentRecord:
    reason = unit.no_call_reason
    assert reason is not None
    return base_record(unit, template, judge_model) | {
        "status": "no_call",
        "outcome": NO_CALL_OUTCOMES[reason],
        "no_call_reason": reason,
    }


def with_verdict(record: JudgmentRecord, template: Template, order: str) -> JudgmentRecord:
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
) -> JudgmentRecord:
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
) -> JudgmentRecord:
    return base_record(unit, template, judge_model) | {
        "status": "failed",
        "failure": failure,
        "error": error,
        "request_key": request_key,
    }


def needs_reparse(record: JudgmentRecord, template: Template) -> bool:
    """A stored reply that was read by another version of the template's parser."""
    return record.get("raw") is not None and record.get("parser_hash") != template.parser_hash


def needs_call(record: JudgmentRecord | None, retry_failed: bool) -> bool:
    if record is None:
        return True
    if record["status"] != "failed":
        return False
    return retry_failed or record.get("failure") in TRANSIENT_FAILURES


# ---- validator ----
def validate_record(record: Any, where: str) -> JudgmentRecord:
    """`record` as a JudgmentRecord, or a DataError naming `where` and the field at fault."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: not a JSON object")
    missing = [name for name in REQUIRED_FIELDS if name not in record]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
    if record["order"] not in ORDERS:
        raise DataError(f"{where}: order {record['order']!r} is not 'AB' or 'BA'")
    if record["status"] not in STATUSES:
        raise DataError(f"{where}: status {record['status']!r} is not ok, no_call or failed")
    if record["status"] != "failed" and record["outcome"] not in OUTCOMES:
        raise DataError(
            f"{where}: status {record['status']} needs outcome A, B or tie, got {record['outcome']!r}"
        )
    if record["status"] == "ok":
        slot = record.get("slot_outcome")
        expected = outcome_of(record["order"], slot) if slot in _SLOT_WINNERS else None
        if expected != record["outcome"]:
            raise DataError(
                f"{where}: slot_outcome {slot!r} in order {record['order']} "
                f"contradicts outcome {record['outcome']!r}"
            )
    return record  # type: ignore[return-value]  # checked above


def latest_records(records: list[Any], where: str) -> dict[str, JudgmentRecord]:
    """Validated records by key, the last line for a key winning (a resumed retry replaces a failure)."""
    latest: dict[str, JudgmentRecord] = {}
    for number, record in enumerate(records, start=1):
        key = record.get("key") if isinstance(record, dict) else None
        checked = validate_record(record, f"{where}: record {number} (key {key!r})")
        latest[checked["key"]] = checked
    return latest
