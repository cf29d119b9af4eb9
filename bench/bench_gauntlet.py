"""Eval Gauntlet speed: a tiny MPT through `make gauntlet` on the real benchmark files.

Part 1 runs the documented command (`limit-foundry gauntlet run`, as `make gauntlet` does) as a
subprocess with `--limit` examples per task and reports examples per second and the share of wall time
spent outside the model (process start, imports, loading, tokenization, file copying): everything but the
model's forward passes, which the run itself times (results.json `timing`). Reported for information: the
one-off import of LLM Foundry alone exceeds 20% for a tiny model, so the target is now the wall-time ratio
against LLM Foundry's own eval entry on the same rows (bench/bench_gauntlet_parallel.py).

Part 2 compares the two ways to cap examples per task, data preparation only (no model), side by
side: truncated copies of the files (what `--limit` does) against LLM Foundry's own
`icl_subset_num_batches` on the full files, which still prepares every row of each file.

    .venv/bin/python bench/bench_gauntlet.py [--limit 100] [--models 1] [--repeats 1] [--batch-size 4]
        [--prep-repeats 3] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
PREP_TASKS = ("lambada_openai", "piqa", "boolq", "bigbench_qa_wikidata")


def default_data_dir() -> Path:
    return Path(
        os.environ.get("GAUNTLET_DATA_DIR") or REPO.parent / "shared" / "data" / "gauntlet" / "local_data"
    )


def end_to_end(
    model_dir: Path, models: int, data_dir: Path, limit: int, out: Path, batch_size: int
) -> dict[str, Any]:
    """One `run` of `models` copies of the tiny MPT (one process, as `make gauntlet MODEL=a,b` runs)."""
    from limit_foundry.eval.progress import PHASES  # the eval loop's phases, as results.json times them

    named = ",".join(f"m{i}={model_dir}" for i in range(1, models + 1))
    command = [
        sys.executable, "-m", "limit_foundry.cli", "gauntlet", "run", "--model", named, "--gauntlet", "v0",
        "--limit", str(limit), "--out", str(out), "--device", "cpu", "--data-dir", str(data_dir), "--overwrite",
        "--batch-size", str(batch_size),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=out.parent, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        raise SystemExit("\n".join(errors) or done.stderr[-3000:])
    results = json.loads((out / "results.json").read_text())
    run = results["timing"]

    def total(key: str) -> float:
        return sum(m["timing"][key] for m in results["models"])

    phases = {
        "process start, CLI imports, exit": wall - run["run_seconds"],
        "checks, smoke-run copies": run["prepare_seconds"],
        "import LLM Foundry": total("import_seconds"),
        "eval: model, evaluators, trainer": total("eval_wall_seconds")
        - sum(total(f"loop_{phase}_seconds") for phase in PHASES),
        "eval: tokenize + first batch": total("loop_first_batch_seconds"),
        "eval: later batches": total("loop_fetch_seconds") + total("loop_batch_prep_seconds"),
        "eval: metric updates": total("loop_metrics_seconds"),
        "model forward passes": total("model_forward_seconds"),
        "checkpoint hash": total("fingerprint_seconds"),
        "reports": run["report_seconds"],
    }
    phases["other (scoring, writes)"] = wall - sum(phases.values())
    examples = sum(b["n_examples"] or 0 for m in results["models"] for b in m["benchmarks"])
    return {"wall": wall, "forward": phases["model forward passes"], "examples": examples, "phases": phases}


def prepare(
    tasks: list[dict], tokenizer, batch_size: int, subset_batches: int | None, workdir: Path
) -> float:
    """Seconds to build the evaluators and draw the batches an eval would use (LLM Foundry's own code).

    Each call gets an empty HF datasets cache: a Gauntlet run reads fresh copies, which never hit it.
    """
    import datasets
    from llmfoundry.utils.builders import build_icl_evaluators

    datasets.config.HF_DATASETS_CACHE = Path(tempfile.mkdtemp(dir=workdir, prefix="hf_cache"))
    started = time.perf_counter()
    evaluators, _ = build_icl_evaluators(tasks, tokenizer, 512, batch_size, str(workdir), subset_batches)
    for evaluator in evaluators:
        for number, _ in enumerate(evaluator.dataloader.dataloader, start=1):
            if subset_batches is not None and number >= subset_batches:
                break
    return time.perf_counter() - started


def prep_comparison(data_dir: Path, limit: int, repeats: int, workdir: Path) -> dict[str, list[float]]:
    import datasets

    from limit_foundry.eval.benchmark_files import eval_file, locate
    from limit_foundry.eval.config import load_gauntlet
    from limit_foundry.models.tiny import load_tiny_tokenizer

    datasets.disable_progress_bars()
    gauntlet = load_gauntlet("v0")
    present, _ = locate(gauntlet, data_dir, limit=limit)
    tokenizer, batch_size = load_tiny_tokenizer(), 4
    full, cut = [], []
    for label in PREP_TASKS:
        task = gauntlet.tasks[label]
        full.append({**task.raw, "dataset_uri": str(present[label].path)})
        cut.append({**task.raw, "dataset_uri": str(eval_file(present[label], workdir / "cut"))})
    times: dict[str, list[float]] = {"truncated copies": [], "icl_subset_num_batches": []}
    for _ in range(repeats):  # interleaved, so both see the same machine load
        times["truncated copies"].append(prepare(cut, tokenizer, batch_size, None, workdir))
        # one global cap: a 4-choice question fills a batch of 4, so `limit` batches cover `limit` questions
        times["icl_subset_num_batches"].append(prepare(full, tokenizer, batch_size, limit, workdir))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=100, help="examples per task (default: %(default)s)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="end-to-end runs; median quoted (default: %(default)s)"
    )
    parser.add_argument(
        "--models",
        type=int,
        default=1,
        help="checkpoints in the one run (copies of the tiny MPT; default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=4, help="the run's --batch-size (default: %(default)s)"
    )
    parser.add_argument(
        "--prep-repeats", type=int, default=3, help="data-prep runs per method (default: %(default)s)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=default_data_dir(), help="benchmark files (default: %(default)s)"
    )
    args = parser.parse_args()
    if not args.data_dir.is_dir():
        raise SystemExit(
            f"{args.data_dir}: benchmark files absent (run `make gauntlet-data` or set GAUNTLET_DATA_DIR)"
        )

    from limit_foundry.models.tiny import build_tiny_mpt

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        build_tiny_mpt(tmp_path / "tiny_mpt")
        runs = [
            end_to_end(
                tmp_path / "tiny_mpt",
                args.models,
                args.data_dir,
                args.limit,
                tmp_path / "out",
                args.batch_size,
            )
            for _ in range(args.repeats)
        ]
        prep = prep_comparison(args.data_dir, args.limit, args.prep_repeats, tmp_path)

    wall = statistics.median(r["wall"] for r in runs)
    forward = statistics.median(r["forward"] for r in runs)
    examples = runs[0]["examples"]
    print(
        f"== make gauntlet, {args.models} x tiny MPT in one run, v0, --limit {args.limit}, "
        f"--batch-size {args.batch_size}, CPU "
        f"(median of {args.repeats}; load average {os.getloadavg()[0]:.2f} at the end)"
    )
    print(f"examples evaluated        {examples}")
    print(f"process wall time         {wall:.1f} s")
    for phase in runs[0]["phases"]:
        seconds = statistics.median(r["phases"][phase] for r in runs)
        print(f"  {phase:<34}{seconds:7.1f} s  {100 * seconds / wall:5.1f}%")
    print(f"examples per second       {examples / wall:.2f}")
    print(f"outside the model         {100 * (wall - forward) / wall:.1f}% of wall time")
    print(f"== capping {args.limit} examples per task, data preparation of {', '.join(PREP_TASKS)} "
          f"(median of {args.prep_repeats})")  # fmt: skip
    medians = {method: statistics.median(values) for method, values in prep.items()}
    for method, seconds in medians.items():
        print(f"{method:<24}  {seconds:.2f} s")
    ratio = medians["icl_subset_num_batches"] / medians["truncated copies"]
    print(f"icl_subset_num_batches / truncated copies = {ratio:.1f}x")


if __name__ == "__main__":
    main()
