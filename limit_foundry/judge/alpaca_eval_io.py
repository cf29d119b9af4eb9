"""AlpacaEval annotation files in and out: read LIMIT-style releases honestly, export our judgments.

Reading (AlpacaEval's annotation records, as LIMIT released them): `preference` 1 = output_1 wins (A), 2 = output_2 wins (B), 0 or 1.5 = draw
(LIMIT's release uses 0, current AlpacaEval 1.5), -1 / null / NaN = no verdict; ints and floats alike.
Nothing is dropped silently: every oddity is counted under an anomaly name with example record
indices (`file#index`, 0-based position in the file), and a record without a verdict stays in the
denominator of the failure rate.

Concatenated runs (the same prompt set judged again, appended to the file): with W = 3 (or the
number of distinct instructions, if fewer), a record whose instruction already occurred in the
current run starts a new run (seed) when either (1) it and the next W-1 records repeat the file's
first W instructions in order (a rerun from the top, complete or not), or (2) the current run
already holds every distinct instruction of the file and it and the next W-1 records all occurred
in the current run (another run, in any order). Any other repeat is a duplicated instruction inside
the run: real prompt sets have them (the Instruct-v3 test set repeats 11 of its 300 prompts), so it is
kept, as AlpacaEval counts it, and flagged. A rerun shorter than W records at the end of a file is
read as duplicates, visibly. A run lacking instructions that other runs of the same comparison
have is flagged `incomplete_run`. Records whose generators are swapped relative to the
comparison (generator_1 is the usual generator_2 and vice versa) have their verdict flipped.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from limit_foundry.errors import ConfigError, DataError
from limit_foundry.io import atomic_write_json, sha256_file
from limit_foundry.judge.inputs import read_records
from limit_foundry.judge.records import RUN_JSON, latest_records
from limit_foundry.judge.results import Comparison, combinations_for, judged_pairs
from limit_foundry.judge.stats import PairVerdict, combine_orders, flip

GROUPINGS = ("together", "per-file")
RUN_WINDOW = 3  # records that must repeat for a repeat to start a new run (see the module docstring)
MAX_EXAMPLES = 5

ANOMALIES = {
    "not_a_record": "entry is not a JSON object (skipped)",
    "missing_instruction": "no instruction text (skipped: cannot be matched to a prompt)",
    "missing_preference": "no `preference` field (counted as no verdict)",
    "no_verdict": "preference -1, null or NaN (no verdict; counted as a failure)",
    "invalid_preference": "preference not in {-1, 0, 1, 1.5, 2} (counted as no verdict)",
    "float_preference": "preference written as a float (read as the same value)",
    "draw": "preference 0 or 1.5 (a draw)",
    "empty_output_1": "output_1 missing or blank",
    "empty_output_2": "output_2 missing or blank",
    "missing_generator_1": "generator_1 missing or blank",
    "missing_generator_2": "generator_2 missing or blank",
    "swapped_generators": "generators in the other order than the comparison's (verdict flipped)",
    "mixed_generators": "generator pair differs from the comparison's most common pair",
    "duplicate_instruction": "instruction repeated inside one run (kept)",
    "concatenated_run": "file holds several runs back to back (each run is a seed)",
    "incomplete_run": "run lacks instructions that other runs of the comparison have",
}


@dataclass(frozen=True)
class Annotation:
    """One usable AlpacaEval record, normalised."""

    where: str  # file#index
    instruction: str
    output_1: str
    output_2: str
    generator_1: str | None
    generator_2: str | None
    outcome: str | None  # "A" (output_1), "B" (output_2), "tie"; None = no verdict
    failure: str | None  # why there is no verdict
    annotator: str | None


class AnomalyLog:
    """Counts and up to MAX_EXAMPLES example locations per anomaly name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)

    def add(self, name: str, where: str) -> None:
        self.counts[name] += 1
        if len(self.examples[name]) < MAX_EXAMPLES:
            self.examples[name].append(where)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"count": self.counts[name], "examples": self.examples[name], "meaning": ANOMALIES[name]}
            for name in ANOMALIES
            if self.counts[name]
        }


def parse_preference(value: Any, where: str, log: AnomalyLog) -> tuple[str | None, str | None]:
    """(outcome, failure cause) of a raw preference value, logging what is odd about it."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        log.add("no_verdict", where)
        return None, "no_verdict"
    if isinstance(value, bool) or not isinstance(value, int | float):
        log.add("invalid_preference", where)
        return None, "invalid_preference"
    if isinstance(value, float):
        log.add("float_preference", where)
    if value == -1:
        log.add("no_verdict", where)
        return None, "no_verdict"
    if value in (0, 1.5):
        log.add("draw", where)
        return "tie", None
    if value in (1, 2):
        return ("A" if value == 1 else "B"), None
    log.add("invalid_preference", where)
    return None, "invalid_preference"


def _text(record: dict[str, Any], name: str) -> str | None:
    value = record.get(name)
    return value if isinstance(value, str) and value.strip() else None


def normalise(records: Sequence[Any], label: str, log: AnomalyLog) -> list[Annotation]:
    """Usable annotations of one file, anomalies logged; unusable entries are counted, not kept."""
    out = []
    for index, record in enumerate(records):
        where = f"{label}#{index}"
        if not isinstance(record, dict):
            log.add("not_a_record", where)
            continue
        instruction = _text(record, "instruction")
        if instruction is None:
            log.add("missing_instruction", where)
            continue
        if "preference" in record:
            outcome, failure = parse_preference(record["preference"], where, log)
        else:
            log.add("missing_preference", where)
            outcome, failure = None, "missing_preference"
        for side in ("1", "2"):
            if _text(record, f"output_{side}") is None:
                log.add(f"empty_output_{side}", where)
            if _text(record, f"generator_{side}") is None:
                log.add(f"missing_generator_{side}", where)
        out.append(
            Annotation(
                where=where,
                instruction=instruction,
                output_1=record.get("output_1") if isinstance(record.get("output_1"), str) else "",
                output_2=record.get("output_2") if isinstance(record.get("output_2"), str) else "",
                generator_1=_text(record, "generator_1"),
                generator_2=_text(record, "generator_2"),
                outcome=outcome,
                failure=failure,
                annotator=_text(record, "annotator"),
            )
        )
    return out


def split_runs(annotations: list[Annotation], log: AnomalyLog) -> list[list[Annotation]]:
    """Split a file's annotations into runs (seeds) by the rule in the module docstring."""
    instructions = [a.instruction for a in annotations]
    distinct = set(instructions)
    width = min(RUN_WINDOW, len(distinct))
    opening = instructions[:width]
    runs: list[list[Annotation]] = [[]]
    seen: set[str] = set()
    for index, annotation in enumerate(annotations):
        if annotation.instruction in seen:
            window = instructions[index : index + width]
            restart = window == opening
            another_complete_run = seen == distinct and all(i in seen for i in window)
            if len(window) == width and (restart or another_complete_run):
                runs.append([])
                seen = set()
                log.add("concatenated_run", annotation.where)
            else:
                log.add("duplicate_instruction", annotation.where)
        seen.add(annotation.instruction)
        runs[-1].append(annotation)
    return runs if runs[0] else []


def comparison_from_files(paths: Sequence[str | Path], name: str | None = None) -> Comparison:
    """One comparison whose seeds are the runs of the given files, in order."""
    log = AnomalyLog()
    seeded: list[tuple[str, list[Annotation]]] = []
    sources = []
    for path in map(Path, paths):
        runs = split_runs(normalise(read_records(path), path.name, log), log)
        for number, run in enumerate(runs, start=1):
            seeded.append((path.name if len(runs) == 1 else f"{path.name}#run{number}", run))
        sources.append({"path": str(path), "sha256": sha256_file(path)})
    everything = [a for _, run in seeded for a in run]
    if not everything:  # an empty list, or nothing usable in it: no result rather than a 0-of-0 table
        raise DataError(f"{', '.join(map(str, paths))}: no judgments (no usable annotation record)")
    full_set = {a.instruction for a in everything}
    for _, run in seeded:
        if {a.instruction for a in run} != full_set:
            log.add("incomplete_run", run[0].where)
    pair_counts = Counter(
        (a.generator_1, a.generator_2) for a in everything if a.generator_1 and a.generator_2
    )
    generator_a, generator_b = pair_counts.most_common(1)[0][0] if pair_counts else ("output_1", "output_2")
    pairs, failures = [], Counter()
    for seed, run in seeded:
        for a in run:
            swapped = (
                (a.generator_1, a.generator_2) == (generator_b, generator_a) != (generator_a, generator_b)
            )
            known = a.generator_1 and a.generator_2
            if swapped:
                log.add("swapped_generators", a.where)
            elif known and (a.generator_1, a.generator_2) != (generator_a, generator_b):
                log.add("mixed_generators", a.where)
            outcome = flip(a.outcome) if swapped else a.outcome
            len_1, len_2 = len(a.output_1), len(a.output_2)
            if a.failure:
                failures[a.failure] += 1
            pairs.append(
                PairVerdict(
                    prompt_id=a.instruction,
                    seed=seed,
                    votes=combine_orders([outcome], "single") if outcome else None,
                    failure=a.failure,
                    len_a=len_2 if swapped else len_1,
                    len_b=len_1 if swapped else len_2,
                )
            )
    annotators = Counter(a.annotator for a in everything if a.annotator)
    return Comparison(
        name=name or " + ".join(Path(p).name for p in paths),
        generator_a=generator_a,
        generator_b=generator_b,
        order_policy="alpaca_eval",
        seeds=[seed for seed, _ in seeded],
        pairs={"single": pairs},
        n_units=len(everything),
        unit_failures=dict(sorted(failures.items())),
        sources=sources,
        meta={"annotators": dict(annotators.most_common())},
        anomalies=log.as_dict(),
    )


def load_alpaca_eval(paths: Sequence[str | Path], grouping: str = "together") -> list[Comparison]:
    """Comparisons from annotation files: all files as the seeds of one, or one per file."""
    if grouping == "together":
        return [comparison_from_files(paths)]
    if grouping == "per-file":
        return [comparison_from_files([p]) for p in paths]
    raise ConfigError(f"unknown grouping {grouping!r} (expected one of {GROUPINGS})")


def _preference(votes: tuple[float, float, float] | None) -> float | None:
    """AlpacaEval's soft preference 1 + P(B) + P(tie)/2: 1 = A (output_1), 2 = B, 1.5 = tie, null = none."""
    if votes is None:
        return None
    a, tie, b = votes
    return 1.0 + b + tie / 2


def answers_from_generation_files(
    a_files: Sequence[str | Path], b_files: Sequence[str | Path]
) -> dict[tuple[str, Any], tuple[str, str]]:
    """(prompt_id, seed) -> (output_a, output_b) from the generation files `run` judged."""
    sides = []
    for files in (a_files, b_files):
        outputs = {}
        for path in files:
            for index, record in enumerate(read_records(path)):
                if not isinstance(record, dict) or not {"prompt_id", "seed", "output"} <= record.keys():
                    raise DataError(f"{path}#{index}: a generation record needs prompt_id, seed and output")
                outputs[(str(record["prompt_id"]), record["seed"])] = record["output"]
        sides.append(outputs)
    return {key: (sides[0][key], sides[1][key]) for key in sides[0].keys() & sides[1].keys()}


def answers_from_run_dir(run_dir: str | Path) -> dict[tuple[str, Any], tuple[str, str]]:
    """Answers read from the inputs run.json lists as `inputs: {"a": [...], "b": [...]}` (each a path or
    an object with a `path`)."""
    run_file = Path(run_dir) / RUN_JSON
    inputs = json.loads(run_file.read_text(encoding="utf-8")).get("inputs")
    if not isinstance(inputs, dict) or not {"a", "b"} <= inputs.keys():
        raise DataError(f"{run_file}: no `inputs` with `a` and `b` file lists; pass the answers explicitly")

    def paths(entries: Any) -> list[str]:
        entries = entries if isinstance(entries, list) else [entries]
        return [e["path"] if isinstance(e, dict) else e for e in entries]

    return answers_from_generation_files(paths(inputs["a"]), paths(inputs["b"]))


def export_alpaca_eval(
    records: Iterable[dict[str, Any]],
    path: str | Path,
    answers: Mapping[tuple[str, Any], tuple[str, str]] | None = None,
    *,
    run_dir: str | Path | None = None,
    combination: str = "strict",
    order_policy: str | None = None,
) -> int:
    """Write our judgments as AlpacaEval annotation records (one per prompt and seed); return the count.

    A is written as output_1 and B as output_2; under order policy `both` the two orders are combined
    (`strict` by default; `split` gives fractional preferences, which AlpacaEval accepts). Failed
    pairs are written with `preference: null` and their `failure` cause, so nothing disappears.
    `answers` maps (prompt_id, seed) to (output_a, output_b); without it they are read from the
    generation files listed in `run_dir`/run.json.
    """
    if answers is None:
        if run_dir is None:
            raise ValueError("export_alpaca_eval needs the answers: pass `answers` or `run_dir`")
        answers = answers_from_run_dir(run_dir)
    policy, pairs = judged_pairs(latest_records(list(records), "judgments"), order_policy)
    if combination not in combinations_for(policy):
        combination = combinations_for(policy)[0]
    out = []
    for pair in pairs:
        if (pair.prompt_id, pair.seed) not in answers:
            raise DataError(
                f"no answers for prompt_id {pair.prompt_id!r} seed {pair.seed!r}: cannot export it"
            )
        output_a, output_b = answers[(pair.prompt_id, pair.seed)]
        first = pair.first
        out.append(
            {
                "instruction": first.get("instruction"),
                "output_1": output_a,
                "generator_1": first.get("generator_a"),
                "output_2": output_b,
                "generator_2": first.get("generator_b"),
                "annotator": f"limit_foundry/{first.get('template')}/{first.get('judge_model')}",
                "preference": _preference(pair.votes(combination)),
                "price_per_example": round(
                    sum(float(u.get("cost_usd") or 0.0) for u in pair.units.values()), 8
                ),
                "prompt_id": pair.prompt_id,
                "seed": pair.seed,
                "failure": pair.failure,
                "verdicts_by_order": {order: u.get("outcome") for order, u in sorted(pair.units.items())},
            }
        )
    atomic_write_json(path, out)
    return len(out)
