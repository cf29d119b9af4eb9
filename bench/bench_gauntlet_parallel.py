"""The Gauntlet against LLM Foundry's own eval entry, and two processes against one, side by side.

(a) `limit-foundry gauntlet run --gauntlet v0 --limit N` against `llmfoundry.command_utils.eval_from_yaml` on the
    same model (a small random Llama, `hf_causal_lm` in both), the same tasks (every v0 benchmark whose file is
    present) and the same rows (the copies `--limit` makes, handed to LLM Foundry's eval as its dataset files),
    with the same seed, batch size, sequence length and precision. Each run is a fresh process, so both pay
    Python's start and LLM Foundry's import; ours also checks, copies, hashes the checkpoint and writes its
    reports. The metrics of the two are compared key by key. Target: ours / native <= 1.0 at identical metrics.
(b) `gauntlet run --nproc 2` (Composer's launcher, two gloo processes sharing the cores) against one process
    (and against one process held to one thread, as each rank runs: the data-parallel scaling itself),
    on an MPT whose forward passes dominate the run (d_model 384, 4 layers, 512 tokens), same rows; metrics
    compared. Target: >= 1.6x on 2 cores.

Runs alternate between the two sides of each comparison (each side first in turn), so both see the same machine
load; medians quoted, each beside the CPU seconds (user + system) the run's process tree spent: on a shared
machine the wall time follows the load, while the CPU seconds show the work a side really does. The bench also
says whether Python reuses compiled bytecode: without it every process compiles its imports anew, a start-up
cost of each process (a `--nproc 2` run has four: the command, Composer's launcher and two ranks).

    .venv/bin/python bench/bench_gauntlet_parallel.py [--repeats 3] [--limit 10] [--parallel-limit 20]
        [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
PARALLEL_MPT = {"d_model": 384, "n_heads": 6, "n_layers": 4}
SETTINGS = {"seed": 17, "max_seq_len": 512, "device_eval_batch_size": 4, "precision": "fp32"}
NATIVE_DUMP = """
import json, sys
from llmfoundry.command_utils import eval_from_yaml
trainers, _ = eval_from_yaml(sys.argv[1], [])
metrics = {
    f"metrics/{label}/{name}": float(metric.compute())
    for label, by_name in trainers[0].state.eval_metrics.items() for name, metric in by_name.items()
}
json.dump(metrics, open(sys.argv[2], "w"))
"""


def default_data_dir() -> Path:
    return Path(
        os.environ.get("GAUNTLET_DATA_DIR") or REPO.parent / "shared" / "data" / "gauntlet" / "local_data"
    )


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """The command's wall seconds and the CPU seconds of its whole process tree (every child waited for)."""
    cpu, started = _children_cpu_seconds(), time.perf_counter()
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    )
    wall, cpu = time.perf_counter() - started, _children_cpu_seconds() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])} ...: exit {done.returncode}\n{done.stderr[-3000:]}")
    return wall, cpu


def alternate(sides: dict[str, list[str]], repeats: int, cwd: Path) -> dict[str, list[tuple[float, float]]]:
    """`repeats` timed runs of each side's command, interleaved and in turn first (A B, B A, A B, ...)."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for repeat in range(repeats):
        for name in sides if repeat % 2 == 0 else reversed(sides):
            runs[name].append(timed(sides[name], cwd))
    return runs


def bytecode_cache() -> str:
    """Whether this interpreter's processes reuse compiled bytecode for the installed packages."""
    import composer

    compiled = Path(importlib.util.cache_from_source(composer.__file__)).is_file()
    if compiled:
        return "compiled bytecode of the installed packages is reused"
    if sys.dont_write_bytecode:
        return (
            "no compiled bytecode for the installed packages and none written (PYTHONDONTWRITEBYTECODE): "
            "every process compiles its imports anew"
        )
    return "no compiled bytecode for the installed packages yet: the first runs compile and cache it"


def ours(model: Path, data_dir: Path, limit: int, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "limit_foundry.cli", "gauntlet", "run", "--model", f"m={model}", "--gauntlet", "v0",
        "--limit", str(limit), "--data-dir", str(data_dir), "--out", str(out), "--device", "cpu", "--overwrite",
        "--batch-size", str(SETTINGS["device_eval_batch_size"]), "--seed", str(SETTINGS["seed"]),
        "--max-seq-len", str(SETTINGS["max_seq_len"]), "--precision", SETTINGS["precision"], *extra,
    ]  # fmt: skip


def native_yaml(model: Path, data_dir: Path, limit: int, work: Path) -> Path:
    """LLM Foundry's eval YAML for the same model, tasks and rows (the rows `--limit` selects, as files)."""
    from limit_foundry.eval.benchmark_files import eval_file, locate
    from limit_foundry.eval.config import load_gauntlet

    gauntlet = load_gauntlet("v0")
    present, _ = locate(gauntlet, data_dir, limit=limit)
    tasks = [
        {**gauntlet.tasks[label].raw, "dataset_uri": str(eval_file(f, work / "rows"))}
        for label, f in present.items()
    ]
    config = {
        **SETTINGS,
        "models": [
            {
                "model_name": "m",
                "model": {
                    "name": "hf_causal_lm",
                    "pretrained_model_name_or_path": str(model),
                    "pretrained": True,
                    "init_device": "cpu",
                },
                "tokenizer": {"name": str(model), "kwargs": {"model_max_length": SETTINGS["max_seq_len"]}},
            }
        ],
        "icl_tasks": tasks,
        "loggers": {},
        "log_config": False,
        "python_log_level": "warning",
    }
    path = work / "native.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def max_difference(a: dict[str, float], b: dict[str, float]) -> float:
    if sorted(a) != sorted(b):
        raise SystemExit(f"different metric keys: {sorted(set(a) ^ set(b))[:5]}")
    return max(abs(a[k] - b[k]) for k in a)


def print_medians(title: str, runs: dict[str, list[tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """Print each side's median wall and CPU seconds and its runs under `title`; return the medians."""
    medians = {
        name: (statistics.median(w for w, _ in values), statistics.median(c for _, c in values))
        for name, values in runs.items()
    }
    print(title)
    print(f"{'':<28}{'wall':>7}   {'CPU':>7}   runs (wall / CPU)")
    for name, (wall, cpu) in medians.items():
        each = ", ".join(f"{w:.1f} / {c:.1f}" for w, c in runs[name])
        print(f"{name:<28}{wall:7.1f} s {cpu:7.1f} s   {each}")
    return medians


def ratios(a: tuple[float, float], b: tuple[float, float]) -> str:
    return f"{a[0] / b[0]:.2f} (wall), {a[1] / b[1]:.2f} (CPU)"


def compare_native(data_dir: Path, limit: int, repeats: int, work: Path) -> None:
    from limit_foundry.models.tiny import build_tiny_llama

    model = build_tiny_llama(work / "llama", hidden_size=128)
    config = native_yaml(model, data_dir, limit, work)
    dump = work / "native_dump.py"
    dump.write_text(textwrap.dedent(NATIVE_DUMP))
    sides = {
        "limit-foundry gauntlet run": ours(model, data_dir, limit, work / "ours"),
        "llmfoundry eval_from_yaml": [sys.executable, str(dump), str(config), str(work / "native.json")],
    }
    runs = alternate(sides, repeats, work)
    ours_metrics = json.loads((work / "ours" / "m" / "RAW.json").read_text())
    native_metrics = json.loads((work / "native.json").read_text())
    medians = print_medians(
        f"== (a) Gauntlet v0, --limit {limit} ({len(ours_metrics)} metrics), tiny Llama (hidden 128), CPU, "
        f"fresh process each (median of {repeats})",
        runs,
    )
    ratio = ratios(medians["limit-foundry gauntlet run"], medians["llmfoundry eval_from_yaml"])
    print(f"ours / native = {ratio} (target <= 1.0); largest metric difference "
          f"{max_difference(ours_metrics, native_metrics):.2e}")  # fmt: skip


def compare_parallel(data_dir: Path, limit: int, repeats: int, work: Path) -> None:
    from limit_foundry.models.tiny import build_tiny_mpt

    model = work / "mpt"
    build_tiny_mpt(model, **PARALLEL_MPT)
    sides = {
        "1 process": ours(model, data_dir, limit, work / "one"),
        "--nproc 2": ours(model, data_dir, limit, work / "two", "--nproc", "2"),
        # what each rank runs with (one thread per core it owns), alone: the data-parallel scaling itself
        "1 process, 1 thread": [
            "env",
            "OMP_NUM_THREADS=1",
            *ours(model, data_dir, limit, work / "one-thread"),
        ],
    }
    runs = alternate(sides, repeats, work)
    one = json.loads((work / "one" / "m" / "RAW.json").read_text())
    two = json.loads((work / "two" / "m" / "RAW.json").read_text())
    forward = json.loads((work / "one" / "results.json").read_text())["models"][0]["timing"][
        "model_forward_seconds"
    ]
    medians = print_medians(
        f"== (b) Gauntlet v0, --limit {limit}, MPT {PARALLEL_MPT} (512 tokens), CPU with {os.cpu_count()} cores "
        f"(median of {repeats}; one process spent {forward:.0f} s in forward passes in its last run)",
        runs,
    )
    (one_wall, one_cpu), (two_wall, two_cpu) = medians["1 process"], medians["--nproc 2"]
    print(f"speed-up = {one_wall / two_wall:.2f}x (target >= 1.6x); CPU seconds 2 processes / 1 = "
          f"{two_cpu / one_cpu:.2f}; largest metric difference {max_difference(one, two):.2e}")  # fmt: skip
    single = medians["1 process, 1 thread"][0]
    print(f"scaling over one single-threaded process = {single / two_wall:.2f}x (one process already runs torch "
          f"on every core: {one_cpu / one_wall:.2f} CPU-s per wall-s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per side; medians quoted (default: %(default)s)"
    )
    parser.add_argument("--limit", type=int, default=10, help="rows per task in (a) (default: %(default)s)")
    parser.add_argument(
        "--parallel-limit", type=int, default=20, help="rows per task in (b) (default: %(default)s)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=default_data_dir(), help="benchmark files (default: %(default)s)"
    )
    parser.add_argument("--only", choices=("native", "parallel"), default=None, help="run one comparison")
    args = parser.parse_args()
    if not args.data_dir.is_dir():
        raise SystemExit(
            f"{args.data_dir}: benchmark files absent (run `make gauntlet-data` or set GAUNTLET_DATA_DIR)"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at the start; {bytecode_cache()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "native"):
            (Path(tmp) / "a").mkdir()
            compare_native(args.data_dir, args.limit, args.repeats, Path(tmp) / "a")
        if args.only in (None, "parallel"):
            (Path(tmp) / "b").mkdir()
            compare_parallel(args.data_dir, args.parallel_limit, args.repeats, Path(tmp) / "b")
    print(f"(load average {os.getloadavg()[0]:.2f} at the end)")


if __name__ == "__main__":
    main()
