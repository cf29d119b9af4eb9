"""`python -m limit_foundry.eval.gauntlet`: run the Eval Gauntlet through LLM Foundry, or re-score saved metrics.

    run    evaluate checkpoints on a Gauntlet (v0 = LIMIT's, v0.3 = LLM Foundry's current one) and write
           OUT/results.json, OUT/results.md, OUT/gauntlet.png and OUT/<model>/RAW.json
    score  re-score RAW.json files (LLM Foundry metric keys -> values) without a model; prints results JSON

Everything is checked before any model work: the Gauntlet config against its tasks file, the
checkpoints, every benchmark file present (absent ones are listed, skipped, and their categories
reported incomplete). Scoring: LIMIT_FACTS §2 (see limit_foundry.eval.scoring).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from limit_foundry.eval.config import GauntletConfigError, Task, load_gauntlet, parse_tasks
from limit_foundry.io import atomic_write_json

RESULTS_FORMAT = "limit_foundry.gauntlet/1"
PRECISIONS = ("fp32", "amp_bf16", "amp_fp16")


class UsageError(ValueError):
    """Bad command-line input; the message names the option or file."""


def _named_paths(values: list[str]) -> list[tuple[str, Path]]:
    pairs = []
    for value in values:
        name, _, path = value.rpartition("=") if "=" in value else ("", "", value)
        path = Path(path)
        pairs.append((name or (path.parent.name if path.name == "RAW.json" else path.stem), path))
    return pairs


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise UsageError(f"{path}: cannot read a JSON object ({err})") from err
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object of metric keys to numbers")
    return data


def build_results(gauntlet: Any, models: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    from limit_foundry.provenance import git_commit, package_versions

    return {
        "format": RESULTS_FORMAT,
        # the column order of the paper's table: results.json sorts its keys, so readers need it spelt out
        "gauntlet": {
            **gauntlet.provenance(),
            "categories": list(gauntlet.categories),
            "averages": list(gauntlet.averages),
        },
        "models": models,
        **extra,
        "packages": package_versions(),
        "git_commit": git_commit(),
    }


def score_command(args: argparse.Namespace) -> int:
    from limit_foundry.eval.report import write_reports
    from limit_foundry.eval.scoring import parse_raw_metrics, score_model

    gauntlet = load_gauntlet(args.config)
    examples = {name: _read_json_object(path) for name, path in _named_paths(args.examples or [])}
    models = []
    for name, path in _named_paths(args.metrics):
        if args.examples and name not in examples:
            raise UsageError(f"--examples has no file for model {name!r} ({path})")
        parsed = parse_raw_metrics(gauntlet, _read_json_object(path), examples.get(name), str(path))
        models.append(score_model(gauntlet, parsed, name))
    results = build_results(gauntlet, models)
    if args.out:
        atomic_write_json(args.out / "results.json", results)
        write_reports(results, args.out)
    print(json.dumps(results, indent=2, sort_keys=True))
    return 0


def _extra_tasks(path: Path | None, gauntlet_labels: set[str]) -> dict[str, Task]:
    if path is None:
        return {}
    tasks = parse_tasks(path)
    clash = sorted(set(tasks) & gauntlet_labels)
    if clash:
        raise UsageError(f"{path}: labels also used by the Gauntlet: {', '.join(clash)}")
    for task in tasks.values():
        uri = task.dataset_uri
        if "://" not in uri and not (path.parent / uri).is_file():
            raise UsageError(f"{path}: task {task.label}: dataset {uri} not found")
    return tasks


def _gauntlet_tasks(gauntlet: Any, present: dict[str, Any], work: Path) -> list[dict[str, Any]]:
    """LLM Foundry task dicts for the benchmarks whose files exist (limited runs: copies in `work`)."""
    from limit_foundry.eval.benchmark_files import eval_file

    return [
        {**gauntlet.tasks[label].raw, "dataset_uri": str(eval_file(file, work / "data"))}
        for label, file in present.items()
    ]


def _extra_task_dicts(
    extras: dict[str, Task], extras_path: Path | None, model_dir: Path, model_id: str
) -> list:
    dicts = []
    for task in extras.values():
        item = dict(task.raw)
        if "://" not in task.dataset_uri:
            item["dataset_uri"] = str((extras_path.parent / task.dataset_uri).resolve())
        if task.icl_task_type == "open_ended_generation":
            item["output_path"] = str(model_dir / "answers" / f"{task.label}.json")
            item.setdefault("generator", model_id)
        dicts.append(item)
    return dicts


def _beside_gauntlet(raw: Any, extras: dict[str, Task], model_id: str) -> dict[str, Any]:
    beside = {}
    for key, value in raw.metrics.items():
        label = key.split("/")[1]
        if label not in extras or key.split("/")[-1] != extras[label].metric:
            continue
        entry = {"metric": extras[label].metric, "value": value, "n_examples": raw.examples.get(key)}
        entry.update(raw.states.get(key, {}))
        if extras[label].icl_task_type == "open_ended_generation":
            entry["answers"] = f"{model_id}/answers/{label}.json"  # relative to OUT
        beside[label] = entry
    return beside


def run_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch looks for a GPU: Composer then picks the CPU
    from limit_foundry.eval.benchmark_files import locate
    from limit_foundry.eval.data import GauntletDataError, load_manifest
    from limit_foundry.eval.report import markdown_table, write_reports
    from limit_foundry.eval.runner import (
        MAX_SEQ_LEN_CAP,
        EvalSettings,
        check_checkpoint,
        context_length,
        parse_models,
        run_model,
    )
    from limit_foundry.eval.scoring import parse_raw_metrics, score_model
    from limit_foundry.models.checkpoints import checkpoint_fingerprint

    if args.device == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device gpu: no CUDA device is available")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be >= 1")
    out: Path = args.out
    if (out / "results.json").exists() and not args.overwrite:
        raise UsageError(f"{out}/results.json exists: choose another --out or pass --overwrite")

    # Everything below up to the first model is checked before any model work.
    gauntlet = load_gauntlet(args.gauntlet)
    models = parse_models(args.model, args.train_yaml)
    for entry in models:
        check_checkpoint(entry)
    extras = _extra_tasks(args.extra_tasks, set(gauntlet.tasks))
    try:
        manifest = load_manifest()
    except GauntletDataError as err:
        print(f"warning: {err}; data checksums are recorded but not compared with a pin", file=sys.stderr)
        manifest = None
    present, missing = locate(gauntlet, args.data_dir, manifest, args.limit)
    if not present:
        raise UsageError(
            f"{args.data_dir}: none of the Gauntlet's benchmark files is there; run `make gauntlet-data` "
            "or point GAUNTLET_DATA_DIR / --data-dir at a copy of llm-foundry's scripts/eval/local_data"
        )
    for item in missing:
        print(
            f"missing benchmark file: {item['path']} ({item['benchmark']}, {item['category']}): skipped, "
            "category reported incomplete",
            file=sys.stderr,
        )
    lengths = [n for n in (context_length(m) for m in models) if n]
    max_seq_len = args.max_seq_len or min([MAX_SEQ_LEN_CAP, *lengths])
    settings = EvalSettings(
        args.batch_size, args.precision, args.seed, args.attn_impl, args.trust_remote_code, args.log_level
    )

    work = (out / ".work").resolve()  # absolute: eval runs inside it, and the task files are named from there
    shutil.rmtree(work, ignore_errors=True)
    tasks = _gauntlet_tasks(gauntlet, present, work)
    timing = {"prepare_seconds": time.perf_counter() - started}  # checks and smoke-run copies
    scored = []
    for entry in models:
        model_dir = out / entry.model_id
        icl_tasks = tasks + _extra_task_dicts(extras, args.extra_tasks, model_dir.resolve(), entry.model_id)
        raw = run_model(entry, icl_tasks, settings, max_seq_len, work / entry.model_id)
        atomic_write_json(model_dir / "RAW.json", raw.metrics)
        atomic_write_json(model_dir / "examples.json", raw.examples)
        result = score_model(
            gauntlet,
            parse_raw_metrics(gauntlet, raw.metrics, raw.examples),
            entry.model_id,
            [m["benchmark"] for m in missing],
        )
        result["other_metrics"] = {
            k: v for k, v in result["other_metrics"].items() if k.split("/")[1] not in extras
        }
        result["beside_gauntlet"] = _beside_gauntlet(raw, extras, entry.model_id)
        hashing = time.perf_counter()
        result["checkpoint"] = checkpoint_fingerprint(entry.spec)
        result["raw_metrics"] = f"{entry.model_id}/RAW.json"  # relative to OUT, as results.json is
        result["timing"] = {**raw.timing, "fingerprint_seconds": time.perf_counter() - hashing}
        scored.append(result)
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)

    data = {
        "dir": str(args.data_dir),
        "files": {label: f.provenance() for label, f in present.items()},
        "missing": missing,
        "pinned_commit": manifest["commit"] if manifest else None,
    }
    run_settings = {
        "limit_per_task": args.limit,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "device": args.device,
        "max_seq_len": max_seq_len,
        "seed": args.seed,
        "attn_impl": args.attn_impl,
    }
    reporting = time.perf_counter()
    results = build_results(gauntlet, scored, data=data, settings=run_settings, timing=timing)
    paths = write_reports(results, out)
    timing["report_seconds"] = time.perf_counter() - reporting
    timing["run_seconds"] = time.perf_counter() - started  # from argument parsing to the reports
    atomic_write_json(out / "results.json", results)
    print(markdown_table(results).split("\n## Benchmarks")[0])
    print(f"wrote {out / 'results.json'}, {paths['markdown']}, {paths['chart']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from limit_foundry.eval.data import DATA_DIR_ENV, default_data_dir

    parser = argparse.ArgumentParser(
        prog="python -m limit_foundry.eval.gauntlet",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True)

    score = sub.add_parser("score", help="score saved raw metrics (no model needed); prints the results JSON")
    score.add_argument(
        "--config", default="v0", help="Gauntlet version (v0, v0.3) or config YAML (default: v0)"
    )
    score.add_argument(
        "--metrics",
        action="append",
        required=True,
        metavar="[NAME=]RAW.json",
        help="raw metrics of one model (LLM Foundry keys -> values); repeat for several models; "
        "NAME defaults to the file's directory (for RAW.json) or stem",
    )
    score.add_argument(
        "--examples",
        action="append",
        metavar="[NAME=]examples.json",
        help="optional: examples behind each metric key (run writes OUT/<model>/examples.json)",
    )
    score.add_argument(
        "--out",
        type=Path,
        default=None,
        help="also write results.json, results.md and gauntlet.png here (default: print only)",
    )

    run = sub.add_parser("run", help="evaluate checkpoints through LLM Foundry's eval and write the reports")
    run.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[NAME=]PATH[,...]",
        help="checkpoint: an HF directory, an MPT directory (hub format or HF export), or a Composer "
        ".pt (needs --train-yaml); comma-separate or repeat for several models, evaluated in one process",
    )
    run.add_argument(
        "--gauntlet", default="v0", help="Gauntlet version (v0 = LIMIT's, v0.3) or config YAML (default: v0)"
    )
    run.add_argument(
        "--out", type=Path, required=True, help="output directory (results.json, results.md, gauntlet.png)"
    )
    run.add_argument(
        "--limit",
        type=int,
        default=None,
        help="examples per task for smoke runs: the first N rows of each benchmark file (default: all)",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=default_data_dir(),
        help=f"benchmark files (default: ${DATA_DIR_ENV} when set, else data/gauntlet/local_data; "
        "`make gauntlet-data` downloads them)",
    )
    run.add_argument(
        "--train-yaml",
        default=None,
        help="training YAML whose model/tokenizer sections build Composer .pt checkpoints (default: none)",
    )
    run.add_argument(
        "--extra-tasks",
        type=Path,
        default=None,
        help="ICL tasks reported beside the Gauntlet, e.g. response_perplexity and open_ended_generation "
        "(dataset paths relative to that file; default: none)",
    )
    run.add_argument(
        "--batch-size", type=int, default=4, help="device eval batch size (default: %(default)s)"
    )
    run.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="Composer precision; fp32 on CPU (default: %(default)s)",
    )
    run.add_argument(
        "--device",
        choices=("auto", "cpu", "gpu"),
        default="auto",
        help="auto uses a GPU when there is one (default: %(default)s)",
    )
    run.add_argument(
        "--max-seq-len",
        type=int,
        default=None,
        help=f"ICL sequence length (default: the smallest model context, at most {2048})",
    )
    run.add_argument(
        "--attn-impl",
        choices=("torch", "flash"),
        default="torch",
        help="MPT attention; flash needs flash-attn and a GPU (default: %(default)s)",
    )
    run.add_argument(
        "--seed", type=int, default=17, help="eval seed (few-shot sampling etc.; default: %(default)s)"
    )
    run.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let HF directories run their own code (default: off)",
    )
    run.add_argument(
        "--overwrite", action="store_true", help="replace results already in --out (default: refuse)"
    )
    run.add_argument(
        "--keep-work",
        action="store_true",
        help="keep OUT/.work (limited copies, eval scratch; default: delete)",
    )
    run.add_argument(
        "--log-level", default="warning", help="LLM Foundry's python log level (default: %(default)s)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from limit_foundry.eval.benchmark_files import BenchmarkFileError
    from limit_foundry.eval.runner import GauntletRunError
    from limit_foundry.eval.scoring import RawMetricsError

    try:
        return score_command(args) if args.command == "score" else run_command(args)
    except (UsageError, GauntletConfigError, BenchmarkFileError, GauntletRunError, RawMetricsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def cli() -> None:
    """The process entry point (`python -m`, eval/gauntlet.py): `main`, then a quick exit.

    Everything is written when `main` returns; without the freeze, the interpreter's teardown spends
    seconds garbage-collecting what LLM Foundry's import created (about 3 s of a run on 2 CPU cores).
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    cli()
