"""The shipped sample datasets keep the real datasets' formats (columns as on the Hugging Face hub), and the bad-row
fixtures are bad exactly where their README says."""

from __future__ import annotations

import json
import re
from collections import Counter
from importlib.resources import files
from pathlib import Path

import pytest

from limit_foundry.data.templates import INSTRUCT_V1_TEMPLATE, PREAMBLE, is_wrapped, strip_template
from limit_foundry.io import iter_jsonl

SAMPLES = Path(str(files("limit_foundry") / "assets" / "samples"))
BAD_ROWS = Path(__file__).resolve().parents[1] / "fixtures" / "bad_rows"

LIMA_SOURCES = {"stackexchange", "wikihow", "Pile", "manual"}
V3_SOURCES = {
    "dolly_hhrlhf",
    "competition_math",
    "cot_gsm8k",
    "duorc",
    "qasper",
    "quality",
    "summ_screen_fd",
    "spider",
    "dialogsum",
}
V3_TEMPLATE = PREAMBLE + "\n\n### Instruction\n{instruction}\n\n### Response:\n"
# One prompt of the LIMIT release's Instruct-v3 test file, as cut by splitting on the preamble.
V3_TEST_PROMPT = re.compile(
    r"^" + re.escape(PREAMBLE) + r"\n\n### Instruction\n(?P<instruction>\S.*?)\n\n?### Response:(\n\n)?$",
    re.DOTALL,
)


def rows(relative: str) -> list[dict]:
    return [obj for _, obj in iter_jsonl(SAMPLES / relative)]


def words(text: str) -> int:
    return len(text.split())


def normalised(text: str) -> str:
    return " ".join(text.casefold().split())


def split_test_prompts(text: str) -> list[str]:
    """Cut the release-format file on the preamble; blank lines may occur inside a prompt."""
    head, *bodies = text.split(PREAMBLE)
    assert head == "", "the file must start with the preamble"
    return [PREAMBLE + body for body in bodies]


def v3_test_prompts() -> list[str]:
    return split_test_prompts((SAMPLES / "instruct_v3" / "test_prompts.txt").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "relative",
    ["lima/train.jsonl", "lima/test.jsonl", "instruct_v1/train.jsonl", "instruct_v3/train.jsonl"],
)
def test_jsonl_files_are_one_object_per_line_utf8_with_trailing_newline(relative: str) -> None:
    raw = (SAMPLES / relative).read_bytes()
    text = raw.decode("utf-8")
    assert text.endswith("\n") and not text.endswith("\n\n")
    for number, line in enumerate(text.splitlines(), start=1):
        assert isinstance(json.loads(line), dict), f"{relative}:{number} is not a JSON object"


def test_lima_train_has_56_single_turn_and_4_multi_turn_rows() -> None:
    train = rows("lima/train.jsonl")
    assert len(train) == 60
    for number, row in enumerate(train, start=1):
        assert set(row) == {"conversations", "source"}, f"lima/train.jsonl:{number}"
        turns = row["conversations"]
        assert isinstance(turns, list) and len(turns) >= 2 and len(turns) % 2 == 0, (
            f"lima/train.jsonl:{number}"
        )
        assert all(isinstance(t, str) and t.strip() == t and t for t in turns), f"lima/train.jsonl:{number}"
    single = [r for r in train if len(r["conversations"]) == 2]
    multi = [r for r in train if len(r["conversations"]) > 2]
    assert len(single) == 56
    assert {r["source"] for r in single} == LIMA_SOURCES
    assert sorted(len(r["conversations"]) for r in multi) == [4, 4, 6, 6]
    assert {r["source"] for r in multi} == {"multi_turn"}


def test_lima_train_answers_are_long_and_careful() -> None:
    """LIMA's style: single-turn answers of roughly 80-250 words."""
    for number, row in enumerate(rows("lima/train.jsonl"), start=1):
        if len(row["conversations"]) == 2:
            answer_words = words(row["conversations"][1])
            assert 80 <= answer_words <= 250, f"lima/train.jsonl:{number}: {answer_words} words"


def test_lima_test_is_30_bare_questions_not_in_train() -> None:
    test = rows("lima/test.jsonl")
    assert len(test) == 30
    for number, row in enumerate(test, start=1):
        assert set(row) == {"conversations", "source"}, f"lima/test.jsonl:{number}"
        assert len(row["conversations"]) == 1 and row["conversations"][0].strip(), f"lima/test.jsonl:{number}"
        assert row["source"] in LIMA_SOURCES, f"lima/test.jsonl:{number}"
        assert not is_wrapped(row["conversations"][0]), f"lima/test.jsonl:{number} is templated"
    train_questions = {normalised(r["conversations"][0]) for r in rows("lima/train.jsonl")}
    leaked = [r["conversations"][0] for r in test if normalised(r["conversations"][0]) in train_questions]
    assert leaked == []


def test_instruct_v1_prompts_carry_the_v1_template_exactly() -> None:
    v1 = rows("instruct_v1/train.jsonl")
    assert len(v1) == 120
    for number, row in enumerate(v1, start=1):
        assert set(row) == {"prompt", "response"}, f"instruct_v1/train.jsonl:{number}"
        instruction = strip_template(row["prompt"])
        assert instruction and instruction != row["prompt"].strip(), f"instruct_v1/train.jsonl:{number}"
        assert row["prompt"] == INSTRUCT_V1_TEMPLATE.format(instruction=instruction), (
            f"instruct_v1/train.jsonl:{number}"
        )
        assert isinstance(row["response"], str) and 1 <= words(row["response"]) <= 80, (
            f"instruct_v1/train.jsonl:{number}"
        )


def test_instruct_v3_prompts_use_v3_layout_without_colon() -> None:
    v3 = rows("instruct_v3/train.jsonl")
    assert len(v3) == 90
    for number, row in enumerate(v3, start=1):
        where = f"instruct_v3/train.jsonl:{number}"
        assert set(row) == {"prompt", "response", "source"}, where
        assert "### Instruction:" not in row["prompt"], where
        instruction = strip_template(row["prompt"])
        assert instruction and row["prompt"] == V3_TEMPLATE.format(instruction=instruction), where
        assert isinstance(row["response"], str) and row["response"].strip(), where
        assert words(row["prompt"]) + words(row["response"]) < 300, where


def test_instruct_v3_sources_allow_stratified_sampling() -> None:
    counts = Counter(row["source"] for row in rows("instruct_v3/train.jsonl"))
    assert set(counts) == V3_SOURCES
    assert min(counts.values()) >= 3
    # Roughly v3's proportions: dolly_hhrlhf is most of the data, dialogsum the smallest source.
    assert counts.most_common(1)[0][0] == "dolly_hhrlhf" and counts["dolly_hhrlhf"] >= 40
    assert counts["dialogsum"] == min(counts.values())


def test_instruct_v3_rows_fit_their_source() -> None:
    by_source: dict[str, list[dict]] = {}
    for row in rows("instruct_v3/train.jsonl"):
        by_source.setdefault(row["source"], []).append(row)
    assert all("\\boxed{" in r["response"] for r in by_source["competition_math"])
    assert all(re.search(r"The answer is \d+\.$", r["response"]) for r in by_source["cot_gsm8k"])
    assert all("CREATE TABLE" in r["prompt"] for r in by_source["spider"])
    assert all(r["response"].startswith("SELECT ") for r in by_source["spider"])
    assert all("#Person1#:" in r["prompt"] for r in by_source["dialogsum"])
    assert all("Question:" in r["prompt"] for s in ("duorc", "qasper", "quality") for r in by_source[s])
    assert all(re.search(r"^[A-D]\. ", r["response"]) for r in by_source["quality"])


def test_v3_test_prompts_split_on_the_preamble_into_30_wrapped_prompts() -> None:
    text = (SAMPLES / "instruct_v3" / "test_prompts.txt").read_text(encoding="utf-8")
    prompts = split_test_prompts(text)
    assert len(prompts) == 30
    # Blank lines separate prompts but also occur inside some: splitting on them would be wrong.
    assert len(text.split("\n\n" + PREAMBLE)) == 30
    assert sum("\n\n" in strip_template(p) for p in prompts) >= 2
    for index, prompt in enumerate(prompts, start=1):
        assert V3_TEST_PROMPT.match(prompt), f"test_prompts.txt prompt {index}: {prompt[-80:]!r}"
        assert strip_template(prompt), f"test_prompts.txt prompt {index}"
    # As in the release: every prompt but the last is followed by a blank line; the file ends at "Response:".
    assert all(p.endswith("### Response:\n\n") for p in prompts[:-1]) and text.endswith("### Response:")
    # Both Response spacings of the release occur (math prompts have no blank line before it).
    assert any(p.endswith("\n\n### Response:\n\n") for p in prompts)
    assert any(re.search(r"[^\n]\n### Response:", p) for p in prompts)


def test_v3_test_prompts_have_the_release_layout(shared_dir: Path) -> None:
    """Every prompt of the real release file fits the same pattern as ours."""
    real = shared_dir / "data" / "limit_test_prompts" / "instructv3_test_prompts.txt"
    if not real.is_file():
        pytest.skip(f"real data absent: {real}")
    real_prompts = split_test_prompts(real.read_text(encoding="utf-8"))
    assert len(real_prompts) == 300
    misfits = [i for i, p in enumerate(real_prompts, start=1) if not V3_TEST_PROMPT.match(p)]
    assert misfits == []


def test_instruct_v1_layout_matches_real_rows(shared_dir: Path) -> None:
    real = shared_dir / "data" / "instruct_v1" / "dolly_hhrlhf_train_small.jsonl"
    if not real.is_file():
        pytest.skip(f"real data absent: {real}")
    real_rows = [obj for _, obj in iter_jsonl(real)]
    assert {tuple(sorted(r)) for r in real_rows} == {("prompt", "response")}
    assert all(
        r["prompt"] == INSTRUCT_V1_TEMPLATE.format(instruction=strip_template(r["prompt"])) for r in real_rows
    )


def test_no_prompt_appears_twice_across_the_sample_files() -> None:
    instructions: list[tuple[str, str]] = []
    for row in rows("lima/train.jsonl"):
        instructions.append(("lima/train", row["conversations"][0]))
    for row in rows("lima/test.jsonl"):
        instructions.append(("lima/test", row["conversations"][0]))
    for relative in ("instruct_v1/train.jsonl", "instruct_v3/train.jsonl"):
        instructions += [(relative, strip_template(row["prompt"])) for row in rows(relative)]
    instructions += [("instruct_v3/test_prompts", strip_template(p)) for p in v3_test_prompts()]
    seen: dict[str, str] = {}
    duplicates = []
    for where, instruction in instructions:
        key = normalised(instruction)
        if key in seen:
            duplicates.append((seen[key], where, instruction[:60]))
        seen[key] = where
    assert len(instructions) == 60 + 30 + 120 + 90 + 30
    assert duplicates == []


# --- bad-row fixtures ------------------------------------------------------------------------------


def _parse(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


BAD_ROW_CHECKS = {
    "missing_response": lambda row: row is not None and "prompt" in row and "response" not in row,
    "empty_prompt": lambda row: row is not None and row["prompt"] == "" and isinstance(row["response"], str),
    "non_string_response": lambda row: row is not None and isinstance(row["response"], (int, float)),
    "not_json": lambda row: row is None,
    "too_long": lambda row: row is not None and is_wrapped(row["prompt"]) and words(row["prompt"]) >= 2500,
    "empty_conversations": lambda row: row is not None and row["conversations"] == [],
    "conversations_not_list": lambda row: row is not None and isinstance(row["conversations"], str),
    "null_turn": lambda row: row is not None and row["conversations"][0] and row["conversations"][1] is None,
}


def _good_v1(row: dict | None) -> bool:
    return (
        row is not None
        and set(row) == {"prompt", "response"}
        and row["prompt"] == INSTRUCT_V1_TEMPLATE.format(instruction=strip_template(row["prompt"]))
        and words(row["prompt"]) < 200
        and isinstance(row["response"], str)
        and bool(row["response"].strip())
    )


def _good_lima(row: dict | None) -> bool:
    return (
        row is not None
        and row.get("source") in LIMA_SOURCES
        and isinstance(row.get("conversations"), list)
        and len(row["conversations"]) == 2
        and all(isinstance(t, str) and t.strip() for t in row["conversations"])
    )


def bad_rows_table() -> dict[str, dict[int, str]]:
    """{file: {line: kind}} from the README's table."""
    table: dict[str, dict[int, str]] = {}
    for line in (BAD_ROWS / "README.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| (\S+\.jsonl) \| (\d+) \| (\w+) \|", line)
        if match:
            table.setdefault(match[1], {})[int(match[2])] = match[3]
    return table


@pytest.mark.parametrize(
    "name, is_good", [("instruct_v1_bad.jsonl", _good_v1), ("lima_bad.jsonl", _good_lima)]
)
def test_bad_row_fixtures_are_bad_exactly_where_the_readme_says(name: str, is_good) -> None:
    listed = bad_rows_table()[name]
    lines = (BAD_ROWS / name).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        row = _parse(line)
        if number in listed:
            assert BAD_ROW_CHECKS[listed[number]](row), f"{name}:{number} is not {listed[number]}"
            assert not is_good(row), f"{name}:{number} passes as a good row"
        else:
            assert is_good(row), f"{name}:{number} is unlisted but not a good row"
    assert max(listed) <= len(lines)


def test_bad_row_fixtures_cover_every_kind() -> None:
    table = bad_rows_table()
    assert sorted(table["instruct_v1_bad.jsonl"].values()) == sorted(
        ["missing_response", "empty_prompt", "non_string_response", "not_json", "too_long"]
    )
    assert sorted(table["lima_bad.jsonl"].values()) == sorted(
        ["empty_conversations", "conversations_not_list", "null_turn"]
    )


def test_unparsable_fixture_line_is_named_by_the_shared_reader() -> None:
    with pytest.raises(ValueError, match=r"instruct_v1_bad\.jsonl:7: not valid JSON"):
        list(iter_jsonl(BAD_ROWS / "instruct_v1_bad.jsonl"))
