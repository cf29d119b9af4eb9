"""The `run` subcommand's command line: every option of `RunOptions`, explained with its default."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from limit_foundry.judge.inputs import EMPTY_POLICIES
from limit_foundry.judge.prompts import ALPACA_EVAL_ORDER_SEED
from limit_foundry.judge.run import BACKENDS, DEFAULT_BASE_URL, RunOptions, run_judge
from limit_foundry.judge.units import ORDER_POLICIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
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


def options_from_args(args: argparse.Namespace) -> RunOptions:
    names = RunOptions.__dataclass_fields__
    return RunOptions(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def run_command(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _raise_interrupt)
    result = run_judge(options_from_args(args), api_key=os.environ.get("OPENAI_API_KEY"))
    print(result.message, file=sys.stderr if result.exit_code else sys.stdout, flush=True)
    return result.exit_code


DESCRIPTION = (
    "Judge model A's answers against model B's with an LLM judge and write a result directory "
    "(judgments.jsonl, run.json). Resumable: rerun the same command after a crash or Ctrl-C. "
    "Exit codes: 0 complete, 1 partial (budget reached or transient failures left), 2 bad input, "
    "3 aborted (auth, quota, unknown model), 130 interrupted."
)


HELP = "judge A against B and write a result directory"
