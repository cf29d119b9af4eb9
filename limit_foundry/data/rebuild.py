"""Rebuild Instruct-v1 (`mosaicml/dolly_hhrlhf`) from its parts, with MosaicML's documented filter.

The dataset card of `mosaicml/dolly_hhrlhf` says: Dolly-15k (`databricks/databricks-dolly-15k`)
plus the first turn of Anthropic's HH-RLHF conversations, removing any sample where the assistant
(1) uses the word "human", "thank" or "sorry", (2) asks a question, or (3) uses a first-person
pronoun; the test split is 200 random Dolly rows plus the HH-RLHF test rows that pass the filter.
Published counts: train 59,310 = 14,814 Dolly + 44,496 HH-RLHF; test 5,129 = 200 + 4,929.

Choices the card leaves open (documented, so a user can compare counts): word checks are
case-insensitive substring matches ("thank" also catches "thanks"); a question is any "?" in the
assistant turn; first-person pronouns are the whole words I, me, my, mine, myself, we, us, our,
ours, ourselves; the HH-RLHF text used is the `chosen` conversation; a Dolly `context` is appended
to the instruction on a new line (as LLM Foundry's own Dolly preprocessing does); the 200 Dolly
test rows are the first 200 of the seeded order of `mixtures.seeded_order`. Prompts get the
Instruct-v1 template (the Alpaca-style template `mosaicml/dolly_hhrlhf` stores its prompts in).
"""

from __future__ import annotations

import re
from pathlib import Path

from limit_foundry.data.mixtures import seeded_order
from limit_foundry.data.readers import RawRecord
from limit_foundry.data.rows import DropLog, OnBadRow, Row, check_text, reject
from limit_foundry.data.sources import LoadedSource, SourceSpec, is_object, source_records
from limit_foundry.data.templates import INSTRUCT_V1_TEMPLATE
from limit_foundry.io import stable_json_hash

NAME = "instruct_v1_rebuild"
DOLLY = SourceSpec("dolly", "databricks/databricks-dolly-15k", license="CC BY-SA 3.0")
HH_RLHF = SourceSpec("hh_rlhf", "Anthropic/hh-rlhf", license="MIT")
DOLLY_TEST_ROWS = 200
PUBLISHED_COUNTS = {
    "train": {"dolly": 14_814, "hh_rlhf": 44_496, "total": 59_310},
    "test": {"dolly": 200, "hh_rlhf": 4_929, "total": 5_129},
}

_WORDS = ("human", "thank", "sorry")
_FIRST_PERSON = re.compile(r"\b(i|me|my|mine|myself|we|us|our|ours|ourselves)\b", re.IGNORECASE)
_FIRST_TURN = re.compile(
    r"\s*Human: (?P<human>.*?)\n\nAssistant: (?P<assistant>.*?)(?=\n\nHuman: |\Z)", re.DOTALL
)


def hh_first_turn(conversation: str) -> tuple[str, str] | None:
    """(human, assistant) of the first exchange of an HH-RLHF conversation, or None if it has none."""
    match = _FIRST_TURN.match(conversation)
    if not match:
        return None
    return match.group("human").strip(), match.group("assistant").strip()


def hh_filter_reason(assistant: str) -> str | None:
    """Why the documented filter removes this assistant turn, or None when it is kept."""
    lowered = assistant.lower()
    if any(word in lowered for word in _WORDS):
        return "uses_human_thank_sorry"
    if "?" in assistant:
        return "asks_question"
    if _FIRST_PERSON.search(assistant):
        return "first_person"
    return None


def _instruct_v1_row(rec: RawRecord, row_id: str, stratum: str, instruction: str, response: str) -> Row:
    prompt = INSTRUCT_V1_TEMPLATE.replace("{instruction}", instruction)
    return Row(row_id, NAME, prompt, response, None, stratum, rec.where)


def _checked(values: dict[str, object], rec: RawRecord, drops: DropLog, policy: OnBadRow, what: str) -> bool:
    for field_name, value in values.items():
        reason = check_text(value, field_name)
        if reason:
            reject(drops, policy, NAME, rec.where, reason, what)
            return False
    return True


def _dolly_rows(
    path: str | Path | None, drops: DropLog, policy: OnBadRow
) -> tuple[list[Row], str, str | None, int]:
    records, origin, fingerprint = source_records(DOLLY, "train", path)
    rows, read = [], 0
    for index, rec in enumerate(records):
        read += 1
        if not is_object(rec, drops, policy, NAME):
            continue
        data = rec.data
        values = {"prompt": data.get("instruction"), "response": data.get("response")}
        if not _checked(values, rec, drops, policy, "Dolly columns instruction/response"):
            continue
        context = data.get("context")
        instruction = values["prompt"]
        if isinstance(context, str) and context.strip():
            instruction = f"{instruction}\n{context}"
        rows.append(_instruct_v1_row(rec, f"{NAME}:dolly:{index}", "dolly", instruction, values["response"]))
    return rows, origin, fingerprint, read


def _hh_rows(
    path: str | Path | None, split: str, drops: DropLog, policy: OnBadRow
) -> tuple[list[Row], str, str | None, int, dict[str, int]]:
    records, origin, fingerprint = source_records(HH_RLHF, split, path)
    rows, read, filtered = [], 0, {}
    for index, rec in enumerate(records):
        read += 1
        if not is_object(rec, drops, policy, NAME):
            continue
        chosen = rec.data.get("chosen")
        if not _checked({"prompt": chosen}, rec, drops, policy, "HH-RLHF column `chosen`"):
            continue
        turn = hh_first_turn(chosen)
        if turn is None:
            reject(drops, policy, NAME, rec.where, "missing_response", "`chosen` has no Human/Assistant turn")
            continue
        human, assistant = turn
        if not _checked(
            {"prompt": human, "response": assistant}, rec, drops, policy, "first turn of `chosen`"
        ):
            continue
        why = hh_filter_reason(assistant)
        if why:
            drops.add(NAME, f"filtered:{why}", rec.where)
            filtered[why] = filtered.get(why, 0) + 1
            continue
        rows.append(_instruct_v1_row(rec, f"{NAME}:hh_rlhf:{split}:{index}", "hh_rlhf", human, assistant))
    return rows, origin, fingerprint, read, filtered


def rebuild_instruct_v1(
    split: str = "train",
    dolly_path: str | Path | None = None,
    hh_path: str | Path | None = None,
    seed: int = 17,
    on_bad_row: OnBadRow = "error",
) -> LoadedSource:
    """Instruct-v1 rebuilt from Dolly-15k and HH-RLHF, with its counts next to the published ones."""
    if split not in PUBLISHED_COUNTS:
        raise ValueError(f"{NAME}: split must be one of {sorted(PUBLISHED_COUNTS)}, got {split!r}")
    drops = DropLog()
    dolly_all, dolly_origin, dolly_fingerprint, dolly_read = _dolly_rows(dolly_path, drops, on_bad_row)
    test_positions = set(seeded_order(dolly_all, seed, f"{NAME}/dolly_test")[:DOLLY_TEST_ROWS])
    dolly = [row for i, row in enumerate(dolly_all) if (i in test_positions) == (split == "test")]
    hh, hh_origin, hh_fingerprint, hh_read, filtered = _hh_rows(hh_path, split, drops, on_bad_row)
    counts = {"dolly": len(dolly), "hh_rlhf": len(hh), "total": len(dolly) + len(hh)}
    details = {
        "rebuild": {
            "rows": counts,
            "published": PUBLISHED_COUNTS[split],
            "difference": {k: counts[k] - PUBLISHED_COUNTS[split][k] for k in counts},
            "hh_rlhf_filtered": dict(sorted(filtered.items())),
            "dolly_test_rows": DOLLY_TEST_ROWS,
        }
    }
    return LoadedSource(
        NAME,
        split,
        f"{dolly_origin} + {hh_origin}",
        stable_json_hash([dolly_fingerprint, hh_fingerprint]),
        INSTRUCT_V1_TEMPLATE,
        dolly + hh,
        drops,
        dolly_read + hh_read,
        details,
        license=f"{DOLLY.license} (Dolly-15k) + {HH_RLHF.license} (HH-RLHF); the result: CC BY-SA 3.0",
    )
