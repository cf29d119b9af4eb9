"""`limit-foundry generate`: answer prompt sets with any checkpoints, batched, seeded, resumable.

A thin layer over `limit_foundry.generate.run.run_generations` (see there for output files, manifest and
resume), or, with `--backend openai|vllm`, `limit_foundry.generate.openai_backend.run_served_generations`. One output file holds every seed of one model on one prompt set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from limit_foundry.cli.common import run_command
from limit_foundry.data.prompt_sets import NAMED_SETS
from limit_foundry.data.templates import TEMPLATES
from limit_foundry.generate.decoding import PAPER_DEFAULTS_NOTE, DecodingSettings
from limit_foundry.generate.engine import DEFAULT_MAX_PADDING
from limit_foundry.generate.openai_backend import (
    REPRODUCIBILITY_NOTE,
    SERVER_BACKENDS,
    ServerOptions,
    run_served_generations,
)
from limit_foundry.generate.run import CHAT_TEMPLATE_MODES, GenerationRun, RunSummary, run_generations


def build_parser(prog: str = "limit-foundry generate") -> argparse.ArgumentParser:
    defaults = DecodingSettings()
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Answer a prompt set with a checkpoint for one or more sampling seeds, writing AlpacaEval-style "
            "records (one JSON file holding every seed) plus <out>.manifest.json. Several models and prompt "
            "sets (comma lists) run in turn, model by model, into --out-dir; every item is checked before any "
            "generation. Resumable: rerun the same command after a kill. "
            f"Decoding {PAPER_DEFAULTS_NOTE}."
        ),
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        required=True,
        help="an HF model directory (LLM Foundry's HF exports included), an MPT directory or hub id "
        "(e.g. mosaicml/mpt-7b, loaded into LLM Foundry's MPT), or a Composer .pt checkpoint (with --train-yaml); "
        "or a comma list of them, a Composer checkpoint written CKPT.pt@TRAIN.yaml",
    )
    model.add_argument(
        "--train-yaml", help="the training YAML of a single Composer .pt checkpoint (default: none)"
    )
    model.add_argument("--tokenizer", help="tokenizer directory or hub id (default: the checkpoint's own)")
    model.add_argument(
        "--device", default="auto", help="cpu, cuda or cuda:N (default: auto = cuda if available)"
    )
    model.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="weights dtype (default: auto = bfloat16 on CUDA, float32 on CPU)",
    )
    model.add_argument(
        "--attn-impl",
        default="auto",
        choices=("auto", "torch", "flash"),
        help="MPT attention (default: auto = flash on CUDA when flash-attn is installed, else torch)",
    )
    model.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let non-MPT HF models run their own code (default: off)",
    )

    prompts = parser.add_argument_group("prompts")
    prompts.add_argument(
        "--prompts",
        required=True,
        help=f"a named set {NAMED_SETS} or a prompt file: .jsonl (instruction/prompt/conversations, "
        "optional prompt_id) or .txt in the LIMIT release layout; or a comma list of them, a named set's "
        "local copy written NAME=LOCAL_COPY",
    )
    prompts.add_argument(
        "--prompts-path",
        help="local copy of a single named set: for lima_test a GAIR/lima test file or directory (jsonl/parquet) or "
        "LIMIT's lima_test_prompts.txt; instruct_v3_test needs LIMIT's instructv3_test_prompts.txt "
        "(default: lima_test from the hub with your HF token)",
    )
    prompts.add_argument(
        "--template",
        default="lima_test",
        help=f"template for bare instructions: {sorted(TEMPLATES)} or a literal containing '{{instruction}}' "
        "(default: lima_test, the layout LIMIT fed every model). Prompts that arrive wrapped are kept as they are",
    )
    prompts.add_argument(
        "--chat-template",
        default="off",
        choices=CHAT_TEMPLATE_MODES,
        help="feed the bare question through the tokenizer's chat template instead of --template: off, on, "
        "or auto (= on when the tokenizer defines one). Default: off, as LIMIT's models were trained on the template",
    )

    decoding = parser.add_argument_group("decoding (defaults: LIMA's settings, LIMIT's ~1k cap)")
    decoding.add_argument(
        "--temperature", type=float, default=defaults.temperature, help="0 = greedy (default: %(default)s)"
    )
    decoding.add_argument(
        "--top-p", type=float, default=defaults.top_p, help="nucleus mass, 1 = off (default: %(default)s)"
    )
    decoding.add_argument("--top-k", type=int, default=defaults.top_k, help="0 = off (default: %(default)s)")
    decoding.add_argument(
        "--repetition-penalty",
        type=float,
        default=defaults.repetition_penalty,
        help="1 = off (default: %(default)s)",
    )
    decoding.add_argument(
        "--max-new-tokens",
        type=int,
        default=defaults.max_new_tokens,
        help="cap per answer, lowered per prompt where the model's context ends (default: %(default)s)",
    )
    decoding.add_argument(
        "--stop",
        action="append",
        default=[],
        help="stop string, repeatable; cut from the output (default: none, EOS only)",
    )

    run = parser.add_argument_group("run")
    where = run.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--out", type=Path, help="output JSON (all seeds in one file; one model and one prompt set)"
    )
    where.add_argument(
        "--out-dir", type=Path, help="write <out-dir>/<generator>/<prompt set>.json instead (for sweeps)"
    )
    run.add_argument("--seeds", type=int, default=1, help="number of sampling seeds (default: %(default)s)")
    run.add_argument(
        "--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed+seeds-1 (default: 0)"
    )
    run.add_argument(
        "--generator",
        help="the records' `generator` name, a folder under --out-dir (default: derived from the model path)",
    )
    run.add_argument(
        "--batch-size", type=int, default=16, help="prompts per generate call (default: %(default)s)"
    )
    run.add_argument(
        "--max-batch-tokens",
        type=int,
        default=0,
        help="cap on batch rows x (padded prompt + new tokens), bounds KV-cache memory (default: 0 = no cap)",
    )
    run.add_argument(
        "--overwrite", action="store_true", help="discard whatever the output holds and start over"
    )
    run.add_argument(
        "--max-padding",
        type=float,
        default=DEFAULT_MAX_PADDING,
        help="left-padding tokens a batch may hold, as a fraction of its real prompt tokens; a longer "
        "prompt starts a new batch (default: %(default)s)",
    )
    run.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads for torch; on a machine shared with other jobs 1 can be many times faster "
        "(default: 0 = torch's default, one per core)",
    )
    run.add_argument(
        "--processes",
        type=int,
        default=1,
        help="hf backend: split the answers across this many processes, each with its own copy of the model "
        "(on GPU process k uses cuda:k, one per GPU; on the CPU each gets an equal share of the cores), merged "
        "into one output file identical to a single process's; each process keeps its own progress log, and a "
        "rerun with any count resumes (default: %(default)s)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_server_arguments(parser)
    return parser


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    server = parser.add_argument_group(
        "server backends",
        f"--backend openai sends completions to a running OpenAI-compatible server (vLLM, SGLang, TGI, "
        f"llama.cpp); --backend vllm starts a vLLM server on the HF directory --model names, on 127.0.0.1, "
        f"logs it to <out>.vllm.log and stops it when the run ends. --model is then the served model's name "
        f"(openai) or the HF directory (vllm). Reproducibility: {REPRODUCIBILITY_NOTE}.",
    )
    server.add_argument(
        "--backend",
        default="hf",
        choices=("hf", *SERVER_BACKENDS),
        help="hf: in-process Hugging Face generate (batch-independent seeded sampling); openai or vllm: a "
        "server (default: %(default)s)",
    )
    server.add_argument(
        "--base-url",
        help="openai: the server's API URL, e.g. http://127.0.0.1:8000/v1 (key: $OPENAI_API_KEY)",
    )
    server.add_argument(
        "--concurrency", type=int, default=16, help="requests in flight at once (default: %(default)s)"
    )
    server.add_argument(
        "--request-timeout", type=float, default=600.0, help="seconds per request (default: %(default)s)"
    )
    server.add_argument(
        "--vllm-python",
        help="vllm: the vLLM environment's python (default: $LIMIT_FOUNDRY_VLLM_PYTHON, else the .venv-vllm "
        "that `make vllm` creates)",
    )
    server.add_argument(
        "--tensor-parallel-size", type=int, default=1, help="vllm: GPUs to shard the model over (default: 1)"
    )
    server.add_argument(
        "--max-model-len", type=int, help="vllm: the server's context (default: the model's own)"
    )
    server.add_argument(
        "--vllm-dtype",
        default="bfloat16",
        choices=("auto", "bfloat16", "float16", "float32"),
        help="vllm: weights dtype on the server (default: %(default)s)",
    )
    server.add_argument(
        "--vllm-arg",
        action="append",
        default=[],
        help="vllm: one more argument for the server, repeatable, e.g. --vllm-arg=--enforce-eager (skips "
        "torch.compile: a faster cold start)",
    )


def server_options_from_args(args: argparse.Namespace) -> ServerOptions:
    return ServerOptions(
        backend=args.backend,
        base_url=args.base_url,
        concurrency=args.concurrency,
        timeout=args.request_timeout,
        vllm_python=args.vllm_python,
        tensor_parallel_size=args.tensor_parallel_size,
        max_model_len=args.max_model_len,
        vllm_dtype=args.vllm_dtype,
        vllm_args=tuple(args.vllm_arg),
    )


def options_from_args(args: argparse.Namespace) -> GenerationRun:
    decoding = DecodingSettings(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        stop_strings=tuple(args.stop),
    )
    return GenerationRun(
        model=args.model,
        prompts=args.prompts,
        out=args.out,
        out_dir=args.out_dir,
        prompts_path=args.prompts_path,
        train_yaml=args.train_yaml,
        tokenizer=args.tokenizer,
        seeds=args.seeds,
        first_seed=args.first_seed,
        decoding=decoding,
        template=args.template,
        chat_template=args.chat_template,
        generator=args.generator,
        batch_size=args.batch_size,
        max_batch_tokens=args.max_batch_tokens,
        max_padding=args.max_padding,
        device=args.device,
        dtype=args.dtype,
        attn_impl=args.attn_impl,
        trust_remote_code=args.trust_remote_code,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        threads=args.threads,
        processes=args.processes,
    )


def print_summary(summary: RunSummary) -> None:
    if summary.already_finished:
        print(f"{summary.out}: already finished ({summary.records} records); nothing to do", flush=True)
        return
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary.finish_reasons.items()))
    print(
        f"{summary.out}: {summary.records} records ({summary.generated_now} generated now, {summary.resumed} "
        f"resumed); finish reasons: {reasons}; {summary.generated_tokens} tokens at {summary.tokens_per_s:.1f} tok/s",
        flush=True,
    )


def main(argv: list[str] | None = None, prog: str = "limit-foundry generate") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.backend != "hf" and args.processes != 1:
        parser.error(
            f"--processes is for --backend hf; --backend {args.backend} sends --concurrency requests"
        )

    def generate() -> None:
        if args.backend == "hf":
            run_generations(options_from_args(args), report=print_summary)
        else:
            run_served_generations(options_from_args(args), server_options_from_args(args), print_summary)

    return run_command(generate, interrupted_hint="rerun the same command to resume")
