"""Read the generation stage's answer files for sides A and B and match them into pairs.

Everything is checked before any judge call: each record has the fields the judge needs, no
(prompt_id, seed) appears twice on a side, both sides cover the same (prompt_id, seed) set, and a
prompt's instruction text is the same everywhere. Every problem found is listed (up to a limit), each
naming the file, the record and the prompt id, so one run fixes them all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from limit_foundry.errors import ConfigError, DataError
from limit_foundry.io import iter_jsonl, sha256_file

REQUIRED = ("instruction", "output", "generator", "prompt_id", "seed")
EMPTY_POLICIES = ("auto-loss", "judge", "error")
MAX_LISTED = 20


@dataclass(frozen=True)
class Answer:
    prompt_id: str
    seed: int
    instruction: str
    output: str
    generator: str
    where: str  # file#index


@dataclass(frozen=True)
class Pair:
    """Model A's and model B's answers to one prompt for one generation seed."""

    prompt_id: str
    seed: int
    instruction: str
    output_a: str
    output_b: str
    generator_a: str
    generator_b: str


def read_records(path: str | Path) -> list[Any]:
    """Entries of a JSON array file or a JSONL file, in file order; errors name the file and position."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        if text.lstrip().startswith("["):
            raise DataError(f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg})") from err
        try:
            return [obj for _, obj in iter_jsonl(path)]  # JSONL
        except ValueError as bad_line:  # names the file and line
            raise DataError(str(bad_line)) from bad_line
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and "instruction" in data:
        return [data]  # a JSONL file of one record
    raise DataError(f"{path}: expected a JSON array or JSONL of annotation records")


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def raise_if_any(self, what: str) -> None:
        if self.items:
            shown = self.items[:MAX_LISTED]
            more = len(self.items) - len(shown)
            tail = f"\n  ... and {more} more" if more else ""
            raise DataError(f"{what}: {len(self.items)} problem(s)\n  " + "\n  ".join(shown) + tail)


def _check_record(record: Any, where: str, problems: _Problems) -> Answer | None:
    if not isinstance(record, dict):
        problems.add(f"{where}: not a JSON object")
        return None
    missing = [name for name in REQUIRED if name not in record]
    pid = record.get("prompt_id")
    if missing:
        problems.add(f"{where} (prompt_id {pid!r}): missing field(s) {', '.join(missing)}")
        return None
    seed = record["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        problems.add(f"{where} (prompt_id {pid!r}): seed must be an integer, got {seed!r}")
        return None
    for name in ("instruction", "output", "generator"):
        if not isinstance(record[name], str):
            problems.add(
                f"{where} (prompt_id {pid!r}): {name} must be text, got {type(record[name]).__name__}"
            )
            return None
    if not isinstance(pid, str | int) or isinstance(pid, bool) or str(pid) == "":
        problems.add(f"{where}: prompt_id must be a non-empty string, got {pid!r}")
        return None
    return Answer(str(pid), seed, record["instruction"], record["output"], record["generator"], where)


def load_side(paths: list[Path], side: str, problems: _Problems) -> dict[tuple[str, int], Answer]:
    """Answers of one side by (prompt_id, seed), from one or several files (JSON array or JSONL)."""
    answers: dict[tuple[str, int], Answer] = {}
    for path in paths:
        try:
            records = read_records(path)
        except DataError as err:
            problems.add(f"--{side} {err}")  # names the file (and line)
            continue
        if not records:
            problems.add(f"--{side} {path}: holds no records")
        for index, record in enumerate(records):
            answer = _check_record(record, f"{path}#{index}", problems)
            if answer is None:
                continue
            key = (answer.prompt_id, answer.seed)
            if key in answers:
                problems.add(
                    f"{answer.where}: duplicated prompt_id {answer.prompt_id!r} seed {answer.seed} "
                    f"(first at {answers[key].where})"
                )
                continue
            answers[key] = answer
    return answers


def _check_instructions(answers: list[Answer], problems: _Problems) -> None:
    """A prompt id must carry one instruction text across seeds and sides."""
    first: dict[str, Answer] = {}
    for answer in answers:
        seen = first.setdefault(answer.prompt_id, answer)
        if seen.instruction != answer.instruction:
            problems.add(
                f"{answer.where}: prompt_id {answer.prompt_id!r} instruction differs from {seen.where} "
                f"({answer.instruction[:60]!r} vs {seen.instruction[:60]!r})"
            )


def _check_coverage(
    a: dict[tuple[str, int], Answer], b: dict[tuple[str, int], Answer], paths: dict[str, list[Path]], problems
) -> None:
    for side, mine, other in (("a", a, b), ("b", b, a)):
        other_side = "b" if side == "a" else "a"
        for pid, seed in sorted(set(other) - set(mine)):
            files = ", ".join(map(str, paths[side]))
            problems.add(
                f"prompt_id {pid!r} seed {seed}: in --{other_side} ({other[(pid, seed)].where}) "
                f"but missing from --{side} ({files})"
            )


def load_pairs(a_paths: list[Path], b_paths: list[Path], empty_policy: str = "auto-loss") -> list[Pair]:
    """Matched pairs sorted by (prompt_id, seed); raises DataError listing every problem."""
    if empty_policy not in EMPTY_POLICIES:
        raise ConfigError(f"unknown empty-answer policy {empty_policy!r} (expected one of {EMPTY_POLICIES})")
    problems = _Problems()
    a = load_side(a_paths, "a", problems)
    b = load_side(b_paths, "b", problems)
    _check_coverage(a, b, {"a": a_paths, "b": b_paths}, problems)
    _check_instructions([*a.values(), *b.values()], problems)
    if empty_policy == "error":
        for answer in [*a.values(), *b.values()]:
            if not answer.output.strip():
                problems.add(
                    f"{answer.where}: empty answer for prompt_id {answer.prompt_id!r} seed {answer.seed} "
                    "(--empty-answers error)"
                )
    problems.raise_if_any("the answer files cannot be judged")
    pairs = []
    for key in sorted(a):
        answer_a, answer_b = a[key], b[key]
        pairs.append(
            Pair(
                *key,
                answer_a.instruction,
                answer_a.output,
                answer_b.output,
                answer_a.generator,
                answer_b.generator,
            )
        )
    return pairs


def describe_inputs(a_paths: list[Path], b_paths: list[Path]) -> dict[str, list[dict[str, str]]]:
    """Paths and content hashes, as run.json records them (and the AlpacaEval export reads them back)."""
    return {
        side: [{"path": str(Path(p).resolve()), "sha256": sha256_file(p)} for p in paths]
        for side, paths in (("a", a_paths), ("b", b_paths))
    }
