"""The benchmark files a Gauntlet run reads: found, checked and (for smoke runs) cut, before any model work.

A file that is absent is listed and its benchmark skipped (its category then reports incomplete);
a file that is present but not what LLM Foundry's ICL loader expects (bad JSON, a missing field) is
an error naming the file and line. Each file is read once: checked, hashed, and with a per-task
limit its first N rows kept (for a task with subcategories, rows are taken in turn from each
subcategory in file order, so every subcategory stays represented) and written as the copy LLM
Foundry reads; few-shot examples are then drawn from those rows as well, so a limited run is a smoke
test, not a comparable score. A file with no more rows than the limit is read in place, uncopied.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limit_foundry.errors import DataError
from limit_foundry.eval.config import Gauntlet, Task
from limit_foundry.io import atomic_write_text, iter_jsonl, sha256_file

# Fields LLM Foundry 0.22's ICL datasets read per task type (llmfoundry/eval/datasets).
REQUIRED_FIELDS = {
    "language_modeling": ("context", "continuation"),
    "multiple_choice": ("query", "choices", "gold"),
    "schema": ("context_options", "continuation", "gold"),
    "generation_task_with_answers": ("context", "answer"),
}


@dataclass(frozen=True)
class BenchmarkFile:
    label: str
    relative_path: str
    path: Path
    rows: int
    sha256: str
    pinned_sha256: str | None
    pinned_git_blob_sha1: str | None
    # the rows a limited run evaluates, kept from the one read; None: the whole file, read in place
    selected: tuple[dict[str, Any], ...] | None = field(default=None, compare=False, repr=False)

    @property
    def rows_used(self) -> int:
        return self.rows if self.selected is None else len(self.selected)

    def provenance(self) -> dict[str, Any]:
        matches = None if self.pinned_sha256 is None else self.sha256 == self.pinned_sha256
        return {
            "path": self.relative_path,
            "rows": self.rows,
            "rows_used": self.rows_used,
            "sha256": self.sha256,
            "pinned_sha256": self.pinned_sha256,
            "pinned_git_blob_sha1": self.pinned_git_blob_sha1,
            "matches_pin": matches,
        }


def read_rows(path: Path, task: Task) -> list[dict[str, Any]]:
    """Every row of a benchmark file, checked for the fields its task type needs."""
    required = REQUIRED_FIELDS.get(task.icl_task_type, ())
    if task.has_categories:
        required = (*required, "category")
    rows = []
    try:
        for line, row in iter_jsonl(path):
            if not isinstance(row, dict):
                raise DataError(f"{path}:{line}: expected a JSON object")
            missing = [f for f in required if f not in row]
            if missing:
                raise DataError(
                    f"{path}:{line}: missing {', '.join(missing)} (needed by {task.icl_task_type} task {task.label})"
                )
            rows.append(row)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from err
    except ValueError as err:  # a line that is not JSON; the message names the file and line
        raise DataError(str(err)) from err
    if len(rows) <= max(task.num_fewshot):
        raise DataError(
            f"{path}: {len(rows)} rows, fewer than {max(task.num_fewshot) + 1} needed for {task.label}"
        )
    return rows


def locate(
    gauntlet: Gauntlet, data_dir: Path, manifest: dict[str, Any] | None = None, limit: int | None = None
) -> tuple[dict[str, BenchmarkFile], list[dict[str, str]]]:
    """Check every task's file under `data_dir`: (present files by label, missing benchmarks).

    With `limit`, each file keeps the rows a limited run evaluates (`eval_file` writes them).
    """
    pinned = (manifest or {}).get("files", {})
    present: dict[str, BenchmarkFile] = {}
    missing: list[dict[str, str]] = []
    category_of = {b.name: b.category for b in gauntlet.benchmarks}
    for label, task in gauntlet.tasks.items():
        path = data_dir / task.dataset_uri
        if not path.is_file():
            missing.append({"benchmark": label, "category": category_of[label], "path": task.dataset_uri})
            continue
        rows = read_rows(path, task)
        pin = pinned.get(task.dataset_uri, {})
        selected = None
        if limit is not None and limit < len(rows):
            selected = tuple(first_rows(rows, limit, task.has_categories))
        present[label] = BenchmarkFile(
            label,
            task.dataset_uri,
            path,
            len(rows),
            sha256_file(path),
            pin.get("sha256"),
            pin.get("git_blob_sha1"),
            selected,
        )
    return present, missing


def first_rows(rows: list[dict[str, Any]], limit: int, by_category: bool) -> list[dict[str, Any]]:
    """The first `limit` rows; with categories, taken in turn from each category (file order)."""
    if not by_category:
        return rows[:limit]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[str(row["category"])].append(row)
    queues = [iter(groups[name]) for name in sorted(groups)]
    chosen: list[dict[str, Any]] = []
    while len(chosen) < limit and queues:
        for queue in list(queues):
            row = next(queue, None)
            if row is None:
                queues.remove(queue)
            elif len(chosen) < limit:
                chosen.append(row)
    return chosen


def eval_file(file: BenchmarkFile, copy_dir: Path) -> Path:
    """The file LLM Foundry reads for a benchmark: the original, or the copy of a limited run's rows."""
    if file.selected is None:
        return file.path.resolve()
    target = copy_dir / file.relative_path
    atomic_write_text(target, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in file.selected))
    return target
