"""Instruct-v1 rebuilt from Dolly-15k and HH-RLHF with the documented filter, counts beside the published ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from limit_foundry.data.rebuild import PUBLISHED_COUNTS, hh_filter_reason, hh_first_turn, rebuild_instruct_v1
from limit_foundry.data.templates import INSTRUCT_V1_TEMPLATE


def test_first_turn_of_an_hh_conversation() -> None:
    text = "\n\nHuman: Name a prime.\n\nAssistant: Seven is prime.\n\nHuman: Another?\n\nAssistant: Eleven."
    assert hh_first_turn(text) == ("Name a prime.", "Seven is prime.")
    assert hh_first_turn("no turns here") is None


@pytest.mark.parametrize(
    "assistant, reason",
    [
        ("As a human being, you could try.", "uses_human_thank_sorry"),
        ("Thanks for asking: it is blue.", "uses_human_thank_sorry"),
        ("SORRY, that is not possible.", "uses_human_thank_sorry"),
        ("Do you mean the city or the state?", "asks_question"),
        ("I think the answer is four.", "first_person"),
        ("Our planet has one moon.", "first_person"),
        ("The capital of France is Paris.", None),
        ("Mix flour and water; bake at 200 C.", None),
    ],
)
def test_documented_filter(assistant: str, reason: str | None) -> None:
    assert hh_filter_reason(assistant) == reason


@pytest.fixture
def parts(tmp_path: Path, write_jsonl) -> tuple[Path, Path]:
    dolly = [
        {
            "instruction": f"Describe item {i}",
            "context": "Some context." if i % 3 == 0 else "",
            "response": f"Item {i}.",
        }
        for i in range(210)
    ]
    dolly.append({"instruction": "", "context": "", "response": "orphan"})  # a bad row
    write_jsonl(tmp_path / "dolly" / "train.jsonl", dolly)
    kept = [
        {"chosen": f"\n\nHuman: List fact {i}\n\nAssistant: Fact {i} holds.\n\nHuman: ok"} for i in range(6)
    ]
    dropped = [
        {"chosen": "\n\nHuman: hi\n\nAssistant: Sorry, no."},
        {"chosen": "\n\nHuman: help\n\nAssistant: What do you need?"},
        {"chosen": "\n\nHuman: opinion\n\nAssistant: I like it."},
    ]
    write_jsonl(tmp_path / "hh" / "helpful-base" / "train.jsonl", kept + dropped)
    write_jsonl(tmp_path / "hh" / "helpful-base" / "test.jsonl", kept[:2])
    return tmp_path / "dolly", tmp_path / "hh"


def test_rebuild_reports_counts_next_to_the_published_ones(parts: tuple[Path, Path]) -> None:
    dolly, hh = parts
    train = rebuild_instruct_v1("train", dolly, hh, seed=17, on_bad_row="skip")
    report = train.details["rebuild"]
    assert report["rows"] == {"dolly": 10, "hh_rlhf": 6, "total": 16}  # 210 Dolly rows - 200 test rows
    assert (
        report["published"] == PUBLISHED_COUNTS["train"] == {"dolly": 14814, "hh_rlhf": 44496, "total": 59310}
    )
    assert report["difference"]["total"] == 16 - 59310
    assert report["hh_rlhf_filtered"] == {"asks_question": 1, "first_person": 1, "uses_human_thank_sorry": 1}
    counts = {k: v["count"] for k, v in train.drops.to_json()["instruct_v1_rebuild"].items()}
    assert counts == {
        "empty_prompt": 1,
        "filtered:asks_question": 1,
        "filtered:first_person": 1,
        "filtered:uses_human_thank_sorry": 1,
    }
    from limit_foundry.data.rows import describe_reason

    assert (
        describe_reason("filtered:first_person") == "removed by the source's documented filter (first person)"
    )
    context_row = next(r for r in train.rows if r.stratum == "dolly" and "Some context." in r.prompt)
    assert context_row.prompt.startswith(INSTRUCT_V1_TEMPLATE.split("{instruction}")[0])
    assert "\nSome context.\n" in context_row.prompt


def test_dolly_test_rows_are_disjoint_from_train(parts: tuple[Path, Path]) -> None:
    dolly, hh = parts
    train = rebuild_instruct_v1("train", dolly, hh, on_bad_row="skip")
    test = rebuild_instruct_v1("test", dolly, hh, on_bad_row="skip")
    assert test.details["rebuild"]["rows"] == {"dolly": 200, "hh_rlhf": 2, "total": 202}
    train_dolly = {r.prompt for r in train.rows if r.stratum == "dolly"}
    test_dolly = {r.prompt for r in test.rows if r.stratum == "dolly"}
    assert len(train_dolly | test_dolly) == 210 and not train_dolly & test_dolly
