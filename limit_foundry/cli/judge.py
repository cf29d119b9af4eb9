"""`limit-foundry judge {run,report,calibrate,reanalyze}`: the pairwise LLM judge's command line.

`python -m limit_foundry.judge ...` is the same command. Each subcommand fills its options dataclass and
calls one library function: `run_judge(RunOptions)`, `write_report(ReportOptions)`,
`calibrate(CalibrateOptions)`, `reanalyze(ReanalysisOptions)`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from limit_foundry.cli.common import run_command
from limit_foundry.judge.alpaca_eval_io import GROUPINGS
from limit_foundry.judge.calibrate import MATCH_MODES, CalibrateOptions, calibrate
from limit_foundry.judge.inputs import EMPTY_POLICIES
from limit_foundry.judge.prompts import ALPACA_EVAL_ORDER_SEED
from limit_foundry.judge.reanalyze import OUTPUT_STEM, ReanalysisOptions, reanalyze
from limit_foundry.judge.report import POLICIES, ReportOptions, write_report
from limit_foundry.judge.run import BACKENDS, DEFAULT_BASE_URL, RunOptions, run_judge
from limit_foundry.judge.summary import LC_RESAMPLES
from limit_foundry.judge.units import ORDER_POLICIES

RUN_HELP = "judge A against B and write a result directory"
RUN_DESCRIPTION = (
    "Judge model A's answers against model B's with an LLM judge and write a result directory "
    "(judgments.jsonl, run.json). Resumable: rerun the same command after a crash or Ctrl-C. "
    "Exit codes: 0 complete, 1 partial (budget reached or transient failures left), 2 bad input (incl. a "
    "local model that cannot be loaded), 3 aborted (auth, quota, unknown model, server unreachable), "
    "130 interrupted."
)
REPORT_HELP = "win rates with CIs from result directories or AlpacaEval files"
REPORT_DESCRIPTION = (
    "Report win rates (raw, the paper's, and length-controlled), failures, position bias and length effects "
    "with bootstrap confidence intervals for judge result directories and/or AlpacaEval annotation files. "
    "Exit codes: 0 ok, 1 failures above --max-failure-rate or a partial run without --allow-partial (the "
    "report is still written), 2 bad input (incl. no judgments at all)."
)
CALIBRATE_HELP = "agreement of a judge with reference verdicts (kappa, CIs)"
REANALYZE_HELP = "paper and length-controlled win rates of a folder of released AlpacaEval judgments"
REANALYZE_DESCRIPTION = (
    "Re-analyse a folder of AlpacaEval annotation files named <comparison>_seed<k>.json (the layout of LIMIT's "
    "release folder model_responses_evaluated_by_gpt4/, searched recursively): per comparison the paper's win "
    f"rate and CI, the length-controlled win rate and CI, mean answer lengths and the anomalies found. Writes "
    f"{OUTPUT_STEM}.{{md,csv,json,png}}. Exit codes: 0 ok, 2 bad input."
)
CALIBRATE_DESCRIPTION = (
    "Agreement of a judge with reference verdicts: raw agreement, tie-discounted accuracy (a tie against a "
    "decisive verdict scores half) and Cohen's kappa, with bootstrap CIs over instructions. Exit codes: 0 ok, "
    "1 kappa below --min-kappa, 2 bad input (incl. nothing compared)."
)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    env_url = os.environ.get("OPENAI_BASE_URL")
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument(
        "--a",
        type=Path,
        action="append",
        required=True,
        metavar="FILE",
        help="model A's answers: a generation file (JSON array or JSONL of AlpacaEval-style records with "
        "instruction, output, generator, prompt_id, seed); repeat for several seed files",
    )
    io.add_argument(
        "--b",
        type=Path,
        action="append",
        required=True,
        metavar="FILE",
        help="model B's answers, same format; must cover the same (prompt_id, seed) pairs as --a",
    )
    io.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="result directory (judgments.jsonl + run.json); rerunning the same command resumes it",
    )
    io.add_argument(
        "--overwrite",
        action="store_true",
        help="discard results in --out made with another configuration (default: refuse)",
    )
    io.add_argument(
        "--allow-identical",
        action="store_true",
        help="judge even when A's and B's answers are identical for every pair (e.g. a file against "
        "itself; every verdict is then a tie without a call) (default: refuse)",
    )
    io.add_argument(
        "--export-alpaca-eval",
        type=Path,
        metavar="FILE",
        help="also write the verdicts as AlpacaEval annotation records to FILE when the run completes",
    )
    judge = parser.add_argument_group("judge")
    judge.add_argument(
        "--template",
        default="pairwise",
        help="built-in template (limit = AlpacaEval's alpaca_eval_gpt4 as LIMIT used it, lima3, pairwise) "
        "or a YAML template file (default: pairwise)",
    )
    judge.add_argument(
        "--order",
        choices=ORDER_POLICIES,
        default="both",
        help="both: judge every pair in both orders; single-seeded: one order per pair chosen from the "
        "instruction text as AlpacaEval does (the LIMIT reproduction) (default: both)",
    )
    judge.add_argument(
        "--order-seed",
        type=int,
        default=ALPACA_EVAL_ORDER_SEED,
        help=f"seed of the single-seeded order choice (default: {ALPACA_EVAL_ORDER_SEED}, AlpacaEval's)",
    )
    judge.add_argument(
        "--model",
        required=True,
        help="judge model name (openai backend) or local model directory / `smollm2` (hf backend)",
    )
    judge.add_argument("--max-tokens", type=int, help="override the template's max_tokens")
    judge.add_argument("--temperature", type=float, help="override the template's temperature")
    judge.add_argument(
        "--empty-answers",
        choices=EMPTY_POLICIES,
        default="auto-loss",
        help="an empty answer loses without a call (auto-loss), is judged like any other (judge), or "
        "stops the run before any call (error) (default: auto-loss)",
    )
    backend = parser.add_argument_group("backend")
    backend.add_argument(
        "--backend",
        choices=BACKENDS,
        default="openai",
        help="openai: any OpenAI-compatible server, key from OPENAI_API_KEY; hf: a local chat model "
        "in-process (default: openai)",
    )
    backend.add_argument(
        "--base-url",
        default=env_url or DEFAULT_BASE_URL,
        help=f"OpenAI-compatible endpoint (default: $OPENAI_BASE_URL or {DEFAULT_BASE_URL})",
    )
    backend.add_argument(
        "--provider",
        help="what the run's identity and the response cache call the endpoint (default: host:port/path of "
        "--base-url); name it when the same model is served at changing addresses, e.g. a local vLLM server "
        "whose port changes between runs, so a rerun resumes instead of conflicting",
    )
    backend.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="most requests in flight; 429s pause all of them for the server's retry-after (default: 8)",
    )
    backend.add_argument(
        "--timeout", type=float, default=60.0, help="seconds per request before it is retried (default: 60)"
    )
    backend.add_argument(
        "--max-attempts",
        type=int,
        default=6,
        help="attempts per request for 5xx, timeouts, dropped connections (default: 6)",
    )
    backend.add_argument(
        "--backoff-base",
        type=float,
        default=1.0,
        help="first retry delay in seconds, doubled per attempt with jitter, capped at 30 (default: 1)",
    )
    backend.add_argument(
        "--max-rate-limit-wait",
        type=float,
        default=900.0,
        help="seconds one request may wait on 429s before it is recorded as failed (default: 900)",
    )
    backend.add_argument(
        "--batch",
        action="store_true",
        help="use the Batch API (half price, results within 24 h); a killed run re-attaches",
    )
    backend.add_argument(
        "--poll-interval", type=float, default=30.0, help="seconds between batch polls (default: 30)"
    )
    backend.add_argument(
        "--batch-rounds",
        type=int,
        default=3,
        help="batches a request may go through before it is recorded as failed (default: 3)",
    )
    backend.add_argument(
        "--hf-dtype", default="float32", help="torch dtype of the hf backend's model (default: float32)"
    )
    cost = parser.add_argument_group("cost and cache")
    cost.add_argument(
        "--max-cost",
        type=float,
        metavar="USD",
        help="stop dispatching before the result directory's spending would pass USD (default: no limit)",
    )
    cost.add_argument(
        "--dry-run",
        action="store_true",
        help="print the number of requests and an estimated cost, make no call, write nothing",
    )
    cost.add_argument(
        "--prices",
        type=Path,
        metavar="FILE",
        help="price table in pricing.yaml's layout (default: the dated table shipped with the package)",
    )
    cost.add_argument(
        "--price-input", type=float, metavar="USD", help="input price per 1M tokens (overrides the table)"
    )
    cost.add_argument(
        "--price-output", type=float, metavar="USD", help="output price per 1M tokens (overrides the table)"
    )
    cost.add_argument(
        "--cache-dir",
        type=Path,
        help="response cache (default: $LIMIT_FOUNDRY_CACHE or ~/.cache/limit_foundry/judge)",
    )
    cost.add_argument("--no-cache", action="store_true", help="neither read nor write the response cache")
    cost.add_argument(
        "--retry-failed",
        action="store_true",
        help="also call again for units that failed for good (parse error, refusal, truncated, context "
        "length); transient failures are always retried on resume",
    )


def add_bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    """The interval options shared by `report` and `calibrate`."""
    parser.add_argument(
        "--n-resamples",
        type=int,
        default=2000,
        metavar="N",
        help="bootstrap resamples (default: %(default)s)",
    )
    parser.add_argument(
        "--rng-seed",
        type=int,
        default=0,
        metavar="SEED",
        help="bootstrap RNG seed; fixed, so the same inputs give the same intervals (default: %(default)s)",
    )
    parser.add_argument(
        "--ci-level",
        type=float,
        default=0.95,
        metavar="LEVEL",
        help="confidence level of the percentile intervals (default: %(default)s)",
    )


def add_length_control_arguments(parser: argparse.ArgumentParser) -> None:
    """The length-controlled win rate's options, shared by `report` and `reanalyze`."""
    parser.add_argument(
        "--lc-resamples",
        type=int,
        default=LC_RESAMPLES,
        metavar="N",
        help="bootstrap resamples of the length-controlled (LC) win rate, each a GLM refit (at most "
        "--n-resamples); 0 = no interval (default: %(default)s)",
    )
    parser.add_argument(
        "--instruction-difficulty",
        type=Path,
        metavar="FILE",
        help="per-prompt difficulties (JSON {prompt id or instruction: number}, or CSV with "
        "instruction_difficulty and prompt_id or instruction) for AlpacaEval's full LC form; without it, the "
        "minimal form (length term + model term) (default: none)",
    )


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dirs",
        nargs="*",
        metavar="DIR",
        help="result directories written by `run` (each one comparison); put them before --alpaca-eval",
    )
    parser.add_argument(
        "--alpaca-eval",
        nargs="+",
        default=[],
        metavar="FILE",
        help="AlpacaEval annotation files (JSON array or JSONL), e.g. LIMIT's released GPT-4 verdicts "
        "(default: none)",
    )
    parser.add_argument(
        "--alpaca-eval-grouping",
        choices=GROUPINGS,
        default="together",
        help="together: the files are the seeds of one comparison; per-file: one comparison per file. "
        "Concatenated runs inside a file are always split into seeds (default: %(default)s)",
    )
    parser.add_argument(
        "--policy",
        choices=POLICIES,
        default="ours",
        help="limit: also quote the paper's win rate (per seed B/(A+B), draws and non-verdicts dropped but "
        "counted, then the mean over seeds); ours: our tables only (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where report.{md,csv,json,png} go (default: the first result directory; required with only "
        "--alpaca-eval files)",
    )
    add_bootstrap_arguments(parser)
    parser.add_argument(
        "--max-failure-rate",
        type=float,
        default=0.01,
        metavar="RATE",
        help="exit 1 when a comparison's failed pairs exceed this share of its pairs (default: %(default)s)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip report.png (default: draw it)")
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="exit 0 for a partial run (interrupted, aborted, budget-capped, pairs never judged); it is "
        "marked PARTIAL in every output either way (default: exit 1)",
    )
    add_length_control_arguments(parser)


def add_reanalyze_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory", type=Path, metavar="DIR", help="folder of <comparison>_seed<k>.json files"
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help=f"where {OUTPUT_STEM}.{{md,csv,json,png}} go (default: DIR)"
    )
    add_bootstrap_arguments(parser)
    add_length_control_arguments(parser)
    parser.add_argument("--no-plot", action="store_true", help=f"skip {OUTPUT_STEM}.png (default: draw it)")


def add_calibrate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "judge",
        nargs="+",
        metavar="JUDGE",
        help="the judge under test: one `run` result directory, or AlpacaEval annotation files",
    )
    parser.add_argument(
        "--reference",
        nargs="+",
        required=True,
        metavar="FILE",
        help="reference verdicts as AlpacaEval annotation files (e.g. LIMIT's released GPT-4-0613 annotations)",
    )
    parser.add_argument(
        "--match",
        choices=MATCH_MODES,
        default="generators",
        help="match rows by instruction + generator pair, by instruction only, or by instruction + both "
        "outputs (default: %(default)s)",
    )
    add_bootstrap_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="also write calibration.md and calibration.json here (default: print the table only)",
    )
    parser.add_argument(
        "--min-kappa",
        type=float,
        help="exit 1 when Cohen's kappa is below this (qualify a judge; default: no check)",
    )


def options_from_args(args: argparse.Namespace, options_class: type) -> object:
    """The options dataclass filled from the parsed arguments of the same names."""
    names = options_class.__dataclass_fields__
    return options_class(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def judge_run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _raise_interrupt)
    result = run_judge(options_from_args(args, RunOptions), api_key=os.environ.get("OPENAI_API_KEY"))
    print(result.message, file=sys.stderr if result.exit_code else sys.stdout, flush=True)
    return result.exit_code


def judge_report(args: argparse.Namespace) -> int:
    """Write the report; the exit code says whether failures stayed under the threshold."""
    result = write_report(options_from_args(args, ReportOptions))
    print(result.markdown)
    for line in [*result.too_many_failures, *result.partial]:
        print(f"report: {line}", file=sys.stderr)
    suffixes = ",".join(path.suffix.lstrip(".") for path in result.written)
    print(f"report: wrote {result.out}/report.{{{suffixes}}}", file=sys.stderr)
    return result.exit_code


def judge_calibrate(args: argparse.Namespace) -> int:
    result = calibrate(options_from_args(args, CalibrateOptions))
    print(result.markdown)
    if result.below_min_kappa:
        print(f"calibrate: {result.below_min_kappa}", file=sys.stderr)
    return result.exit_code


def judge_reanalyze(args: argparse.Namespace) -> int:
    result = reanalyze(options_from_args(args, ReanalysisOptions))
    print(result.markdown)
    suffixes = ",".join(path.suffix.lstrip(".") for path in result.written)
    print(f"reanalyze: wrote {result.out}/{OUTPUT_STEM}.{{{suffixes}}}", file=sys.stderr)
    return 0


# name -> (one line for the list, description, the function adding its options, the function running it)
SUBCOMMANDS: dict[
    str, tuple[str, str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "run": (RUN_HELP, RUN_DESCRIPTION, add_run_arguments, judge_run),
    "report": (REPORT_HELP, REPORT_DESCRIPTION, add_report_arguments, judge_report),
    "calibrate": (CALIBRATE_HELP, CALIBRATE_DESCRIPTION, add_calibrate_arguments, judge_calibrate),
    "reanalyze": (REANALYZE_HELP, REANALYZE_DESCRIPTION, add_reanalyze_arguments, judge_reanalyze),
}


def build_parser(prog: str = "limit-foundry judge") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Pairwise LLM judge for instruction-tuning studies: run judgments (resumable, cached, "
        "cost-capped), report win rates with confidence intervals, calibrate a judge against reference verdicts, "
        "re-analyse released judgments.",
    )
    subparsers = parser.add_subparsers(
        dest="command", required=True, metavar="{" + ",".join(SUBCOMMANDS) + "}"
    )
    for name, (help_text, description, add_arguments, execute) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=description)
        add_arguments(sub)
        sub.set_defaults(func=execute)
    return parser


def main(argv: list[str] | None = None, prog: str = "limit-foundry judge") -> int:
    args = build_parser(prog).parse_args(sys.argv[1:] if argv is None else argv)
    return run_command(lambda: args.func(args), interrupted_hint="rerun the same command to resume")
