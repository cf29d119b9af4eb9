"""`limit-foundry data`: build LIMIT datasets as Streaming MDS (one directory per recipe) and report overlap.

    limit-foundry data --recipe all --out data
    limit-foundry data --recipe 'lima:all,instruct_v1:5000' --source-path lima=~/lima --out data
    limit-foundry data --recipe instruct_v1_5k_lima --out data --check-overlap \\
        --instruct-v3-test-prompts instructv3_test_prompts.txt --gauntlet-dir llm-foundry/scripts/eval/local_data
    limit-foundry data --compare paper_instruct_v1_5k instruct_v1_5k --out compare.json

The library is limit_foundry.data (`build.build_datasets`); this file only parses arguments. Exit
status: 0 when every recipe was built (or was up to date), 1 when one failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from limit_foundry.cli.common import run_command
from limit_foundry.data.build import BuildOptions, DatasetsOptions, build_datasets
from limit_foundry.data.compare import CompareOptions, compare_datasets
from limit_foundry.data.overlap import OverlapOptions
from limit_foundry.data.recipes import NAMED_RECIPES
from limit_foundry.data.rows import ON_BAD_ROW_CHOICES
from limit_foundry.data.sources import ColumnMap, user_source
from limit_foundry.data.templates import TEMPLATES
from limit_foundry.errors import EXIT_FAILURES, UserError


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise UserError(f"{option} expects NAME=VALUE, got {value!r}")
        out[key.strip()] = rest.strip()
    return out


def build_parser(prog: str) -> argparse.ArgumentParser:
    named = ", ".join(NAMED_RECIPES)
    p = argparse.ArgumentParser(
        prog=prog,
        description="Build LIMIT datasets (LIMA, Instruct-v1/v3, subsets, mixtures) into Streaming MDS "
        "directories <out>/<recipe>/ with a manifest.json, for the `limit_finetuning` loader.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--recipe",
        action="append",
        help=f"repeatable (or give --compare). A named paper recipe ({named}), `all` for every named recipe, "
        "or an ad-hoc one: SOURCE:AMOUNT[:stratified] terms joined by commas, AMOUNT = all | N rows | P%% "
        "(shares need every term in %% and may add total:N), e.g. 'lima:all,instruct_v1:5000' or "
        "'instruct_v3:1000:stratified'. All rows land in the `train` split unless --heldout is given.",
    )
    p.add_argument(
        "--out",
        help="data root: each recipe goes to <out>/<recipe dir>/ (default: data). With --compare: also write "
        "the comparison as JSON to this file (default: markdown on stdout only)",
    )
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("RELEASED", "REBUILT"),
        help="instead of building, report how two recipes' rows differ, e.g. `--compare paper_instruct_v1_5k "
        "instruct_v1_5k`: rows shared (content hash of prompt and response, and ignoring the template), rows per "
        "source and stratum, length distributions, and the prompt templates with the first differing characters "
        "as reprs (whitespace visible). Rows are selected as a build would (same --seed, --source-path, ...); "
        "nothing is written but --out",
    )
    p.add_argument(
        "--seed", type=int, default=17, help="seed of every subset and held-out split (default: 17)"
    )
    p.add_argument(
        "--source-path",
        action="append",
        default=[],
        metavar="SOURCE=PATH",
        help="repeatable. Read SOURCE from a local JSONL/Parquet file or directory instead of the Hugging Face "
        "hub (sources: lima, instruct_v1, instruct_v3, the paper_* releases, user sources; for "
        "instruct_v1_rebuild give dolly=PATH and hh_rlhf=PATH). A directory holds <split>.jsonl / <split>-*.parquet files. Default: the hub "
        "(GAIR/lima is gated and needs HF_TOKEN or `huggingface-cli login`).",
    )
    p.add_argument(
        "--user-source",
        action="append",
        default=[],
        metavar="NAME=LOCATION",
        help="repeatable. Define a source NAME from your own dataset: LOCATION is hf:ORG/NAME for the hub, or a "
        "local file/directory. Map its columns with --columns (default columns: prompt, response).",
    )
    p.add_argument(
        "--columns",
        action="append",
        default=[],
        metavar="NAME=prompt:COL,response:COL[,stratum:COL]",
        help="repeatable. Column mapping of a --user-source (default: prompt:prompt,response:response).",
    )
    p.add_argument(
        "--template",
        action="append",
        default=[],
        metavar="SOURCE=TEMPLATE",
        help=f"repeatable. Prompt template of SOURCE: one of {sorted(TEMPLATES)} or a literal containing "
        "{instruction}. Prompts that are already templated are kept as they are. Defaults: lima uses "
        "lima_test (LIMIT's LIMA test-prompt layout); instruct_v1/v3 and user sources pass prompts unchanged.",
    )
    p.add_argument(
        "--lima-multi-turn",
        choices=("drop", "keep"),
        default="drop",
        help="LIMA's 30 multi-turn rows: drop them, counted in the manifest (LIMIT's choice), or keep them as chat "
        "`messages` (a split mixing them with prompt/response rows then needs --tokenizer) (default: drop)",
    )
    p.add_argument(
        "--dedup",
        choices=("none", "exact"),
        default="none",
        help="exact: remove rows whose prompt and response equal an earlier row's (counted). none keeps the "
        "datasets as the paper used them; duplicates are still counted in the manifest (default: none)",
    )
    p.add_argument(
        "--heldout",
        type=int,
        default=0,
        metavar="N",
        help="move N seeded rows of each recipe into a `heldout` split (default: 0, everything in `train`)",
    )
    p.add_argument(
        "--tokenizer",
        help="a tokenizer name or directory: also write pre-tokenized shards (tokenized/<split>/), token-length "
        "statistics, and treat prompts longer than --max-seq-len as bad rows (default: none, text only)",
    )
    p.add_argument(
        "--max-seq-len",
        type=int,
        default=2048,
        help="with --tokenizer: rows whose prompt leaves no response token within this length are bad rows "
        "(default: 2048, the 7B runs' value)",
    )
    p.add_argument(
        "--on-bad-row",
        choices=ON_BAD_ROW_CHOICES,
        default="error",
        help="error: stop before writing anything and name the file, line and reason of the first bad row; "
        "skip: leave bad rows out and count each by reason in the manifest (default: error)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace datasets built from other inputs (default: refuse)"
    )
    p.add_argument(
        "--check-overlap",
        action="store_true",
        help="after building, report exact and n-gram overlap of each dataset with the evaluation prompt sets "
        "(LIMA test from the lima source, --instruct-v3-test-prompts, --gauntlet-dir, --eval-set); writes "
        "<out>/<recipe dir>.overlap.json",
    )
    p.add_argument(
        "--instruct-v3-test-prompts", help="LIMIT's instructv3_test_prompts.txt (for --check-overlap)"
    )
    p.add_argument("--gauntlet-dir", help="an Eval Gauntlet local_data directory (for --check-overlap)")
    p.add_argument(
        "--eval-set",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="repeatable. Another prompt file (.jsonl or LIMIT .txt) to check overlap against",
    )
    p.add_argument("--ngram", type=int, default=13, help="n-gram length of --check-overlap (default: 13)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (default: show them)")
    return p


def build_options(args: argparse.Namespace) -> BuildOptions:
    columns = {k: ColumnMap.parse(v) for k, v in _pairs(args.columns, "--columns").items()}
    templates = _pairs(args.template, "--template")
    source_paths = {
        k: str(Path(v).expanduser()) for k, v in _pairs(args.source_path, "--source-path").items()
    }
    users = {}
    for name, location in _pairs(args.user_source, "--user-source").items():
        users[name] = user_source(name, location, columns.pop(name, ColumnMap()), templates.get(name, "none"))
        if not location.startswith("hf:"):
            source_paths.setdefault(name, str(Path(location).expanduser()))
    if columns:
        raise UserError(f"--columns given for {sorted(columns)}, which are not --user-source names")
    return BuildOptions(
        seed=args.seed,
        on_bad_row=args.on_bad_row,
        source_paths=source_paths,
        user_sources=users,
        templates=templates,
        lima_multi_turn=args.lima_multi_turn,
        dedup=args.dedup,
        heldout=args.heldout,
        tokenizer=args.tokenizer,
        max_seq_len=args.max_seq_len,
    )


def datasets_options(args: argparse.Namespace) -> DatasetsOptions:
    overlap = None
    if args.check_overlap:
        overlap = OverlapOptions(
            instruct_v3_test_prompts=args.instruct_v3_test_prompts,
            gauntlet_dir=args.gauntlet_dir,
            eval_sets=_pairs(args.eval_set, "--eval-set"),
            ngram=args.ngram,
        )
    return DatasetsOptions(
        recipes=args.recipe,
        out=Path(args.out or "data"),
        build=build_options(args),
        overwrite=args.overwrite,
        progress=not args.quiet,
        overlap=overlap,
    )


def main(argv: list[str] | None = None, prog: str = "limit-foundry data") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not args.recipe and not args.compare:
        parser.error("one of --recipe (build) or --compare RELEASED REBUILT (report) is required")
    if args.recipe and args.compare:
        parser.error("--recipe and --compare cannot be combined: --compare builds nothing")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def compare() -> int:
        out = Path(args.out) if args.out else None
        options = CompareOptions(tuple(args.compare), build_options(args), out, progress=not args.quiet)
        print(compare_datasets(options).markdown, end="")
        return 0

    if args.compare:
        return run_command(compare)

    def build() -> int:
        result = build_datasets(datasets_options(args))
        if result.ok:
            return 0
        total = len(result.built) + len(result.failed)
        print(
            f"error: {len(result.failed)} of {total} recipes failed: {', '.join(result.failed)}",
            file=sys.stderr,
        )
        return EXIT_FAILURES

    return run_command(build)


if __name__ == "__main__":
    sys.exit(main())
