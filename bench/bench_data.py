"""Data benchmarks: padding waste, effective training throughput, MDS build throughput.

1. Padding waste (share of batch tokens that are padding), one epoch through the registered
   `limit_finetuning` loader, paper config (every row padded to max_seq_len, no packing) vs
   pad trimming only vs packing (+ pad trimming), per recipe, at 2048 tokens (7B runs, microbatch 4)
   and 8192 (30B runs, microbatch 1). Tokenizer: SmolLM2's 49k BPE (a real subword tokenizer;
   the paper's gpt-neox-20b is not reachable offline). Data: the 1,000 real Instruct-v1 rows in
   ../shared and a LIMA-length sample: LIMA has ~750,000 tokens over exactly 1,000 sequences
   (LIMA, Zhou et al. 2023), so 1,000 rows of real Instruct-v1 text, each re-cut to a seeded length around
   750 tokens (lognormal, sigma 0.6, 64..4,000). Packing ratios: LLM Foundry's `auto` and this
   loader's `fit` (97% mean fill from the real token lengths); samples still waiting in the
   packer's leftover bins at the end of the epoch are reported (emitted first in the next epoch).
2. Effective training throughput (non-padding tokens per second) of the tiny CPU MPT
   (d_model 64, 2 layers, tiny tokenizer) at 2048 tokens, forward + backward + AdamW step,
   paper config vs packing, batches of the two configs interleaved in the same run; medians.
3. MDS build throughput (rows/s): `build_recipe` (validation, manifest, hashes included) vs LLM
   Foundry's `convert_finetuning_dataset` (`--num-workers 1`, text shards), the same 20,000-row
   JSONL (the real sample repeated 20 times), alternated, medians.

    .venv/bin/python bench/bench_data.py [--repeats 3] [--steps 8] [--only waste,throughput,build]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from limit_foundry.data.build import BuildOptions, build_recipe
from limit_foundry.data.packing import padding_tokens

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
INSTRUCT_V1 = SHARED / "data" / "instruct_v1" / "dolly_hhrlhf_train_small.jsonl"
LIMA_MEAN_TOKENS = 750  # LIMA (Zhou et al. 2023): ~750,000 tokens over 1,000 sequences


def lima_length_sample(out: Path, tokenizer, rows: int = 1000, seed: int = 17) -> Path:
    """LIMA-layout rows of real Instruct-v1 text whose token lengths follow a LIMA-like spread."""
    source = [json.loads(line) for line in INSTRUCT_V1.read_text().splitlines()]
    text = " ".join(r["response"] for r in source)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    rng = np.random.Generator(np.random.PCG64(seed))
    sigma = 0.6
    lengths = np.clip(rng.lognormal(math.log(LIMA_MEAN_TOKENS) - sigma**2 / 2, sigma, rows), 64, 4000).astype(
        int
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    start = 0
    with open(out, "w", encoding="utf-8") as f:
        for i, n in enumerate(lengths):
            question = source[i % len(source)]["prompt"].split("### Instruction:\n", 1)[1].split("\n\n###")[0]
            if start + n > len(ids):
                start = 0
            answer = tokenizer.decode(ids[start : start + n - 40])  # ~40 tokens of templated question
            start += n
            f.write(json.dumps({"conversations": [question, answer], "source": "bench"}) + "\n")
    return out


def loader(
    data_root: Path, recipe: str, tokenizer, max_seq_len: int, batch: int, packing_ratio=None, trim=False
):
    from llmfoundry.data.dataloader import build_dataloader

    dataset = {
        "recipe": recipe,
        "data_root": str(data_root),
        "split": "train",
        "max_seq_len": max_seq_len,
        "decoder_only_format": True,
        "shuffle": True,
        "shuffle_seed": 17,
        "allow_pad_trimming": trim or packing_ratio is not None,
        "packing_ratio": packing_ratio,
    }
    cfg = {"name": "limit_finetuning", "dataset": dataset, "drop_last": False, "num_workers": 0,
           "pin_memory": False, "prefetch_factor": None, "persistent_workers": False}  # fmt: skip
    return build_dataloader(cfg, tokenizer, batch).dataloader


def pending_samples(dataloader) -> int:
    packer = getattr(dataloader.collate_fn, "base_collator", dataloader.collate_fn)
    return sum(int(ex["sequence_id"].max()) + 1 for _, ex in getattr(packer, "_leftover_bins", []))


def epoch_waste(dataloader) -> tuple[float, int, int]:
    pad = total = samples = 0
    for batch in dataloader:
        p, t = padding_tokens(batch)
        pad, total = pad + p, total + t
        samples += int((batch["sequence_id"].max(dim=1).values + 1).clamp(min=1).sum())
    return pad / total, samples, pending_samples(dataloader)


def bench_waste(work: Path, tokenizer_dir: Path, tokenizer) -> None:
    lima = lima_length_sample(work / "lima" / "train.jsonl", tokenizer)
    sources = {"instruct_v1": str(INSTRUCT_V1), "lima": str(lima)}
    print("\n## Padding waste (share of batch tokens that are padding), one epoch, SmolLM2 tokenizer")
    print(
        "| recipe | max_seq_len x microbatch | rows (skipped: prompt too long) | mean tokens | paper config "
        "| pad trimming | packing `auto` (ratio) | packing `fit` (ratio) | samples carried over (fit) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    configs = (("paper", None, False), ("trim", None, True), ("auto", "auto", True), ("fit", "fit", True))
    for max_seq_len, batch in ((2048, 4), (8192, 1)):
        options = BuildOptions(
            source_paths=sources, tokenizer=str(tokenizer_dir), max_seq_len=max_seq_len, on_bad_row="skip"
        )
        root = work / f"data{max_seq_len}"
        for recipe in ("instruct_v1:all", "lima:all", "instruct_v1:all,lima:200"):
            manifest = build_recipe(recipe, root, options).manifest
            results = {}
            for name, ratio, trim in configs:
                dataloader = loader(
                    root, recipe, tokenizer, max_seq_len, batch, packing_ratio=ratio, trim=trim
                )
                results[name] = (*epoch_waste(dataloader), dataloader.batch_size / batch)
            mean = manifest["tokenizer"]["stats"]["train"]["total_tokens"]["mean"]
            print(
                f"| {recipe} | {max_seq_len} x {batch} | {results['paper'][1]} ({manifest['rows_dropped']}) "
                f"| {mean:.0f} | {results['paper'][0]:.1%} | {results['trim'][0]:.1%} "
                f"| {results['auto'][0]:.1%} ({results['auto'][3]:g}) "
                f"| {results['fit'][0]:.1%} ({results['fit'][3]:g}) | {results['fit'][2]} |"
            )


def bench_throughput(work: Path, steps: int) -> None:
    import torch

    from limit_foundry.models.tiny import TINY_TOKENIZER_DIR, build_tiny_mpt, load_tiny_tokenizer

    tokenizer = load_tiny_tokenizer()
    max_seq_len, batch = 2048, 4
    options = BuildOptions(
        source_paths={"instruct_v1": str(INSTRUCT_V1)},
        tokenizer=str(TINY_TOKENIZER_DIR),
        max_seq_len=max_seq_len,
        on_bad_row="skip",  # the sample has prompts longer than 2,048 tiny-tokenizer tokens
    )
    build_recipe("instruct_v1:all", work / "tiny", options)
    packed = loader(work / "tiny", "instruct_v1:all", tokenizer, max_seq_len, batch, packing_ratio="fit")
    loaders = {
        "paper config": iter(loader(work / "tiny", "instruct_v1:all", tokenizer, max_seq_len, batch)),
        f"packing fit ({packed.batch_size / batch:g})": iter(packed),
    }
    model = build_tiny_mpt(seed=0, max_seq_len=max_seq_len, attn_config={"attn_uses_sequence_id": True})
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for step in range(steps + 1):  # step 0 warms up each config
        for name, batches in loaders.items():
            b = next(batches)
            start = time.perf_counter()
            out = model(
                input_ids=b["input_ids"], attention_mask=b["attention_mask"], sequence_id=b["sequence_id"]
            )
            logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1])
            loss = torch.nn.functional.cross_entropy(
                logits, b["labels"][:, 1:].reshape(-1), ignore_index=-100
            )
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            elapsed = time.perf_counter() - start
            if step:
                rates[name].append(int(b["attention_mask"].sum()) / elapsed)
    print(f"\n## Effective training throughput, tiny MPT on CPU ({torch.get_num_threads()} threads), "
          f"max_seq_len {max_seq_len}, microbatch {batch}, {steps} steps each, interleaved")  # fmt: skip
    print("| config | median non-padding tokens/s |")
    print("|---|---|")
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name, median in medians.items():
        print(f"| {name} | {median:,.0f} |")
    paper, packed = medians.values()
    print(f"ratio packing / paper config: {packed / paper:.1f}x")


def bench_build(work: Path, repeats: int) -> None:
    from llmfoundry.command_utils import convert_finetuning_dataset

    lines = INSTRUCT_V1.read_text().splitlines()
    big = work / "build" / "train.jsonl"
    big.parent.mkdir(parents=True)
    big.write_text("\n".join(lines * 20) + "\n")
    rows = len(lines) * 20
    ours, foundry = [], []
    for i in range(repeats):
        start = time.perf_counter()
        build_recipe(
            "instruct_v1:all",
            work / "build" / f"ours{i}",
            BuildOptions(source_paths={"instruct_v1": str(big)}),
        )
        ours.append(rows / (time.perf_counter() - start))
        start = time.perf_counter()
        convert_finetuning_dataset(
            dataset="json", data_subset=None, splits=["train"], preprocessor=None, data_files=[str(big)],
            skip_preprocessing=True, out_root=str(work / "build" / f"foundry{i}"), local=None, compression=None,
            num_workers=1, tokenizer=None, tokenizer_kwargs={}, max_seq_len=2048, target_prompts="none",
            target_responses="last", encoder_decoder=False,
        )  # fmt: skip
        foundry.append(rows / (time.perf_counter() - start))
    print(f"\n## MDS build throughput, {rows:,} rows, {repeats} alternated runs (median rows/s)")
    print("| builder | rows/s |")
    print("|---|---|")
    print(f"| limit_foundry build_recipe | {statistics.median(ours):,.0f} |")
    print(f"| llmfoundry convert_finetuning_dataset (num_workers 1) | {statistics.median(foundry):,.0f} |")
    print(f"ratio: {statistics.median(ours) / statistics.median(foundry):.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="build-throughput runs per builder (default: 3)"
    )
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per config (default: 8)")
    parser.add_argument(
        "--only",
        default="waste,throughput,build",
        help="comma-separated subset of waste,throughput,build (default: all)",
    )
    args = parser.parse_args()
    if not INSTRUCT_V1.is_file():
        raise SystemExit(f"real data absent: {INSTRUCT_V1} (the benchmarks need ../shared)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parts = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "waste" in parts:
            from limit_foundry.data.tokens import load_tokenizer
            from limit_foundry.models.smollm2 import load_smollm2_tokenizer

            tokenizer_dir = work / "smollm2_tokenizer"
            load_smollm2_tokenizer().save_pretrained(tokenizer_dir)  # right padding is set when it is loaded
            bench_waste(work, tokenizer_dir, load_tokenizer(str(tokenizer_dir)))
        if "throughput" in parts:
            bench_throughput(work, args.steps)
        if "build" in parts:
            bench_build(work, args.repeats)


if __name__ == "__main__":
    main()
