"""Token-level checks shared by the dataset build and the training loader.

Rows are tokenized with LLM Foundry's own `tokenize_formatted_example`, so build-time checks and
pre-tokenized shards match exactly what its finetuning loader computes at training time. A row
whose prompt leaves no response token inside max_seq_len is what LLM Foundry's HF path filters
out silently and its streaming path crashes on mid-epoch (`is_valid_ift_example` is the test);
here it is counted or refused up front. Lengths count the EOS token the collator appends.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from limit_foundry.errors import ModelLoadError
from limit_foundry.io import sha256_bytes, stable_json_hash

TokenizedExample = dict[str, list[dict[str, list[int]]]]


def load_tokenizer(name_or_path: str, max_seq_len: int | None = None):
    """The tokenizer a training run would build from `tokenizer.name` (AutoTokenizer, right padding).

    A path that does not exist is named as such, not reported as a malformed hub id.
    """
    from huggingface_hub.errors import HFValidationError
    from transformers import AutoTokenizer

    path = Path(name_or_path).expanduser()
    if not path.exists() and (name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1):
        raise ModelLoadError(f"tokenizer {name_or_path}: the directory does not exist")
    kwargs: dict[str, Any] = {"padding_side": "right"}
    if max_seq_len:
        kwargs["model_max_length"] = max_seq_len
    try:
        return AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    except HFValidationError as err:
        raise ModelLoadError(
            f"tokenizer {name_or_path}: the directory does not exist (nor is it a Hugging Face hub id)"
        ) from err
    except OSError as err:  # transformers' message says what it tried (local files, the hub)
        raise ModelLoadError(f"tokenizer {name_or_path}: cannot be loaded ({err})") from err


def tokenizer_fingerprint(tokenizer) -> str:
    """Identity of what a tokenizer computes (its full serialized pipeline, or its vocabulary)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        body = backend.to_str()
    else:
        body = stable_json_hash(sorted(tokenizer.get_vocab().items()))
    return sha256_bytes((body + "\0" + stable_json_hash(tokenizer.special_tokens_map)).encode("utf-8"))


def tokenize_examples(examples: Iterable[dict[str, Any]], tokenizer) -> list[TokenizedExample]:
    """LLM Foundry's tokenization of prompt/response or chat examples, as its loader would do it."""
    import logging

    from llmfoundry.data.finetuning.tasks import tokenize_formatted_example
    from llmfoundry.utils.logging_utils import SpecificWarningFilter

    # Long rows are truncated (and counted) later, as in LLM Foundry's own loader: silence the same warning.
    hf_logger = logging.getLogger("transformers.tokenization_utils_base")
    too_long = SpecificWarningFilter("Token indices sequence length is longer than the specified maximum")
    hf_logger.addFilter(too_long)
    try:
        out = []
        for example in examples:
            tokenized = tokenize_formatted_example(example, tokenizer)
            out.append(
                {"turns": [{k: list(t[k]) for k in ("input_ids", "labels")} for t in tokenized["turns"]]}
            )
        return out
    finally:
        hf_logger.removeFilter(too_long)


def is_trainable(example: TokenizedExample, max_seq_len: int) -> bool:
    """LLM Foundry's own test: some response token survives truncation to max_seq_len."""
    from llmfoundry.data.finetuning.tasks import is_valid_ift_example

    return is_valid_ift_example(max_seq_len, "none", "last", True, example)


def example_lengths(example: TokenizedExample, eos_token_id: int | None) -> tuple[int, int]:
    """(prompt tokens, response tokens incl. the EOS the collator appends) of a tokenized example."""
    turns = example["turns"]
    prompt = sum(len(t["input_ids"]) for t in turns) + sum(len(t["labels"]) for t in turns[:-1])
    last = turns[-1]["labels"]
    response = len(last) + (0 if last and last[-1] == eos_token_id else 1)
    return prompt, response


def _summary(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {"count": 0}
    arr = np.asarray(values, dtype=np.int64)
    return {
        "count": int(arr.size),
        "mean": round(float(arr.mean()), 2),
        "min": int(arr.min()),
        "p50": float(np.percentile(arr, 50)),
        "p90": float(np.percentile(arr, 90)),
        "p99": float(np.percentile(arr, 99)),
        "max": int(arr.max()),
    }


def length_stats(examples: Sequence[TokenizedExample], eos_token_id: int | None, max_seq_len: int) -> dict:
    """Token-length statistics of a split, for the manifest (totals include the appended EOS)."""
    lengths = [example_lengths(e, eos_token_id) for e in examples]
    totals = [p + r for p, r in lengths]
    return {
        "prompt_tokens": _summary([p for p, _ in lengths]),
        "response_tokens": _summary([r for _, r in lengths]),
        "total_tokens": _summary(totals),
        "truncated_at_max_seq_len": sum(t > max_seq_len for t in totals),
        "padding_share_unpacked": round(
            1 - sum(min(t, max_seq_len) for t in totals) / (len(totals) * max_seq_len), 4
        )
        if totals
        else None,
    }
