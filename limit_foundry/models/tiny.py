"""A tiny from-scratch MPT and a tiny tokenizer, so training, eval and generation run in seconds on a CPU.

The tokenizer is committed (`limit_foundry/assets/tiny_tokenizer`): a byte-level BPE with 1,024
entries trained once on Python's own documentation text (`pydoc_data.topics`), so any UTF-8 text
encodes and `train_tiny_tokenizer` can rebuild it. The model uses torch attention, as LLM
Foundry 0.22's MPT needs on a CPU (its default, flash, needs flash-attn and CUDA).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

TINY_TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny_tokenizer"
EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

TINY_MPT_CONFIG: dict[str, Any] = {
    "d_model": 64,
    "n_heads": 4,
    "n_layers": 2,
    "expansion_ratio": 4,
    "max_seq_len": 512,
    "vocab_size": 1024,
    "no_bias": True,
    "learned_pos_emb": False,
    "norm_type": "low_precision_layernorm",
    "attn_config": {"attn_impl": "torch", "alibi": True},
    "init_device": "cpu",
}


def _pydoc_corpus() -> Iterable[str]:
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield topics[name]


def train_tiny_tokenizer(
    out_dir: str | Path, corpus: Iterable[str] | None = None, vocab_size: int = 1024
) -> Path:
    """Train the byte-level BPE and save it as a transformers tokenizer directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN, PAD_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus if corpus is not None else _pydoc_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        padding_side="right",
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=TINY_MPT_CONFIG["max_seq_len"],
    )
    out_dir = Path(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def load_tiny_tokenizer(padding_side: str = "right"):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(TINY_TOKENIZER_DIR, padding_side=padding_side)


def build_tiny_mpt(out_dir: str | Path | None = None, seed: int = 0, **overrides: Any):
    """A randomly initialised tiny `MPTForCausalLM`; saved with the tiny tokenizer when `out_dir` is given."""
    import torch
    from llmfoundry.models.mpt import MPTConfig, MPTForCausalLM

    config = {**TINY_MPT_CONFIG, **overrides}
    config["attn_config"] = {**TINY_MPT_CONFIG["attn_config"], **overrides.get("attn_config", {})}
    torch.manual_seed(seed)
    model = MPTForCausalLM(MPTConfig(**config))
    model.eval()
    if out_dir is not None:
        out_dir = Path(out_dir)
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer = load_tiny_tokenizer()
        tokenizer.model_max_length = config["max_seq_len"]  # the model's context, not the tokenizer's default
        tokenizer.save_pretrained(out_dir)
    return model


def build_tiny_llama(
    out_dir: str | Path,
    context: int = 512,
    hidden_size: int = 64,
    chat_template: str | None = None,
    seed: int = 0,
) -> Path:
    """A randomly initialised tiny Llama saved with the tiny tokenizer: a non-MPT transformers checkpoint
    (`hf_causal_lm`) that loads without LLM Foundry, for tests of the HF paths."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = load_tiny_tokenizer()
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=context,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    LlamaForCausalLM(config).save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir
