"""`limit-foundry gauntlet`: run the Eval Gauntlet through LLM Foundry, or re-score saved metrics.

    run       evaluate checkpoints on a Gauntlet (v0 = LIMIT's, v0.3 = LLM Foundry's current one) and write
              OUT/results.json, OUT/results.md, OUT/gauntlet.png and OUT/<model>/RAW.json
    score     re-score RAW.json files (LLM Foundry metric keys -> values) without a model; prints results JSON
    merge     one table from several `run` outputs of the same Gauntlet and settings (e.g. one job per model)
    download  download the pinned benchmark files (what `make gauntlet-data` runs)
    pin       maintainers: rebuild the data pin from a local llm-foundry git checkout

Everything is checked before any model work: the Gauntlet config against its tasks file, the
checkpoints, every benchmark file present (absent ones are listed, skipped, and their categories
reported incomplete). Scoring: the Eval Gauntlet's rescaled accuracy, as in Jha et al. 2023 (LIMIT).
`run --nproc N` evaluates data-parallel in N processes (one per GPU) through Composer's launcher, with the
results of one process; `composer -n N -m limit_foundry.cli gauntlet run ...` does the same.
Also runnable as `python -m limit_foundry.eval.gauntlet` and `python -m limit_foundry.eval.data`.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
from pathlib import Path

from limit_foundry.cli.common import run_command
from limit_foundry.eval.config import VERSIONS
from limit_foundry.eval.data import (
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
    PINNED_COMMIT,
    default_data_dir,
    default_manifest_path,
    download,
    pin,
)
from limit_foundry.eval.gauntlet import (
    ATTN_IMPLS,
    DEVICES,
    PRECISIONS,
    GauntletOptions,
    ScoreOptions,
    merge_gauntlet_results,
    run_gauntlet,
    score_gauntlet,
)
from limit_foundry.eval.runner import MAX_SEQ_LEN_CAP


def _add_score(sub: argparse._SubParsersAction) -> None:
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


def _add_merge(sub: argparse._SubParsersAction) -> None:
    merge = sub.add_parser(
        "merge", help="one results.json from several runs' results.json (same Gauntlet and settings)"
    )
    merge.add_argument(
        "results", type=Path, nargs="+", help="results.json files written by `gauntlet run`, in table order"
    )
    merge.add_argument(
        "--out", type=Path, required=True, help="write results.json, results.md, gauntlet.png here"
    )
    merge.add_argument("--overwrite", action="store_true", help="replace OUT/results.json if it exists")


def _add_run(sub: argparse._SubParsersAction) -> None:
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
        help=f"benchmark files (default: ${DATA_DIR_ENV} when set, else {DEFAULT_DATA_DIR}; "
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
        default="auto",
        help="Composer precision; auto = amp_bf16 on GPU, fp32 on CPU (default: %(default)s)",
    )
    run.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="auto uses a GPU when there is one (default: %(default)s)",
    )
    run.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="evaluate data-parallel in N processes, one per GPU (on CPU: N processes sharing the cores), "
        "started through Composer's launcher; same results as one process (default: %(default)s)",
    )
    run.add_argument(
        "--fsdp",
        action="store_true",
        help="shard each model across the GPUs with FSDP, for models too large for one GPU (GPU only; "
        "default: every process holds the whole model)",
    )
    run.add_argument(
        "--max-seq-len",
        type=int,
        default=None,
        help=f"ICL sequence length (default: the smallest model context, at most {MAX_SEQ_LEN_CAP})",
    )
    run.add_argument(
        "--attn-impl",
        choices=ATTN_IMPLS,
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


def _add_data(sub: argparse._SubParsersAction) -> None:
    manifest = default_manifest_path()
    get = sub.add_parser("download", help="download the pinned benchmark files (skips files already correct)")
    get.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"target directory (default: ${DATA_DIR_ENV} when set, else {DEFAULT_DATA_DIR})",
    )
    get.add_argument(
        "--gauntlet",
        action="append",
        choices=sorted(VERSIONS),
        help="only the files this Gauntlet version reads; repeatable (default: every pinned file)",
    )
    get.add_argument("--manifest", type=Path, default=manifest, help="data manifest (default: %(default)s)")
    get.add_argument(
        "--base-url",
        default=None,
        help="fetch <base-url>/<path> instead of GitHub raw (a mirror; default: GitHub)",
    )
    get.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: %(default)s)")
    make = sub.add_parser("pin", help="rebuild the manifest from a local llm-foundry git checkout")
    make.add_argument("--repo", type=Path, required=True, help="path of an llm-foundry git checkout")
    make.add_argument("--commit", default=PINNED_COMMIT, help="commit to pin (default: %(default)s, v0.22.0)")
    make.add_argument("--out", type=Path, default=manifest, help="manifest to write (default: %(default)s)")


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_score(sub)
    _add_merge(sub)
    _add_run(sub)
    _add_data(sub)
    return parser


def _score(args: argparse.Namespace) -> int:
    output = score_gauntlet(ScoreOptions(args.metrics, args.config, args.examples or [], args.out))
    print(json.dumps(output.results, indent=2, sort_keys=True))
    return 0


def _merge(args: argparse.Namespace) -> int:
    output = merge_gauntlet_results(args.results, args.out, args.overwrite)
    print(output.summary())
    print(f"wrote {', '.join(map(str, output.files))}")
    return 0


def _run(args: argparse.Namespace) -> int:
    # The process ends once the reports are written: freezing what LLM Foundry's import created spares
    # the interpreter's teardown seconds of garbage collection (about 3 s of a run on 2 CPU cores).
    atexit.register(gc.freeze)
    options = GauntletOptions(
        models=args.model,
        out=args.out,
        gauntlet=args.gauntlet,
        limit=args.limit,
        data_dir=args.data_dir,
        train_yaml=args.train_yaml,
        extra_tasks=args.extra_tasks,
        batch_size=args.batch_size,
        precision=args.precision,
        device=args.device,
        max_seq_len=args.max_seq_len,
        attn_impl=args.attn_impl,
        seed=args.seed,
        trust_remote_code=args.trust_remote_code,
        overwrite=args.overwrite,
        keep_work=args.keep_work,
        log_level=args.log_level,
        nproc=args.nproc,
        fsdp=args.fsdp,
    )
    output = run_gauntlet(options)
    if output.files:  # in a launch, only rank 0 writes (and reports)
        print(output.summary())
        print(f"wrote {', '.join(map(str, output.files))}")
    return 0


def _download(args: argparse.Namespace) -> int:
    out = args.out or default_data_dir()
    status = download(out, args.gauntlet, args.manifest, args.base_url, args.timeout)
    fetched = sum(s == "downloaded" for s in status.values())
    print(f"{out}: {fetched} downloaded, {len(status) - fetched} already present and verified")
    return 0


def _pin(args: argparse.Namespace) -> int:
    print(f"wrote {pin(args.repo, args.commit, args.out)}")
    return 0


COMMANDS = {"score": _score, "merge": _merge, "run": _run, "download": _download, "pin": _pin}
INTERRUPTED_HINTS = {
    "run": "no results were written; rerun the same command (open-ended answers already written are kept)",
    "download": "files already verified are kept; rerun to fetch the rest",
}


def main(argv: list[str] | None = None, prog: str = "limit-foundry gauntlet") -> int:
    args = build_parser(prog).parse_args(argv)
    return run_command(
        lambda: COMMANDS[args.command](args),
        interrupted_hint=INTERRUPTED_HINTS.get(args.command, ""),
    )
