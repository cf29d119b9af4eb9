"""The judgment-record contract: what the writers produce, the validator accepts, and a bad record is named."""

from __future__ import annotations

import pytest

from limit_foundry.errors import DataError, UserError
from limit_foundry.io import JsonlAppender, read_jsonl_log
from limit_foundry.judge.inputs import Pair
from limit_foundry.judge.prompts import load_template
from limit_foundry.judge.records import (
    JUDGMENTS,
    REQUIRED_FIELDS,
    JudgmentRecord,
    failed_record,
    latest_records,
    needs_call,
    no_call_record,
    outcome_of,
    reply_record,
    validate_record,
)
from limit_foundry.judge.units import Unit

TEMPLATE = load_template("pairwise")
PAIR = Pair("p0", 1, "Q?", "short", "a longer answer", "model-a", "model-b")


def _reply(order: str, slot: int) -> JudgmentRecord:
    return reply_record(
        Unit(PAIR, order, None),
        TEMPLATE,
        "judge-x",
        text=TEMPLATE.example_replies[slot],
        finish_reason="stop",
        refusal=None,
        usage={"prompt_tokens": 100, "completion_tokens": 10},
        cost_usd=0.00123456789,
        cached=False,
        request_key="k",
    )


def test_written_records_round_trip_through_the_log_and_validator(tmp_path):
    records = [
        _reply("AB", 2),
        _reply("BA", 2),
        no_call_record(Unit(PAIR, "AB", "identical"), TEMPLATE, "judge-x"),
        failed_record(Unit(PAIR, "BA", None), TEMPLATE, "judge-x", "server_error", "503", "k"),
    ]
    with JsonlAppender(tmp_path / JUDGMENTS, fsync=False) as log:
        for record in records:
            log.write(record)
    read = read_jsonl_log(tmp_path / JUDGMENTS).records
    assert read == records and all(set(r) == set(JudgmentRecord.__required_keys__) for r in read)
    latest = latest_records(read, JUDGMENTS)
    assert list(latest) == ["p0|1|AB", "p0|1|BA"]  # the last line of a key wins
    assert latest["p0|1|AB"]["status"] == "no_call" and latest["p0|1|AB"]["outcome"] == "tie"
    assert latest["p0|1|BA"]["failure"] == "server_error" and needs_call(latest["p0|1|BA"], False)
    # slot 2 is B's answer in order AB and A's in order BA; the cost is rounded to 8 digits
    assert (records[0]["outcome"], records[1]["outcome"], records[0]["cost_usd"]) == ("B", "A", 0.00123457)
    assert [outcome_of(o, s) for o, s in (("AB", 1), ("BA", 1), ("BA", 0))] == ["A", "B", "tie"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"order": "BB"}, "order 'BB' is not 'AB' or 'BA'"),
        ({"status": "done"}, "status 'done' is not ok, no_call or failed"),
        ({"outcome": "C"}, "status ok needs outcome A, B or tie, got 'C'"),
        ({"slot_outcome": 1}, "slot_outcome 1 in order AB contradicts outcome 'B'"),
    ],
)
def test_a_bad_record_is_named_by_where_and_field(change, message):
    record = _reply("AB", 2) | change
    with pytest.raises(DataError, match=f"judgments.jsonl: record 3 .*{message}"):
        latest_records([_reply("BA", 1), _reply("BA", 2), record], "judgments.jsonl")


def test_missing_fields_and_non_objects_are_user_errors():
    for name in REQUIRED_FIELDS:
        record = {k: v for k, v in _reply("AB", 1).items() if k != name}
        with pytest.raises(UserError, match=f"here: missing field\\(s\\) {name}"):
            validate_record(record, "here")
    with pytest.raises(UserError, match="here: not a JSON object"):
        validate_record(["key"], "here")
