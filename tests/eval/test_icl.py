"""The custom ICL evaluators against independent computations (the batches Composer would run).

Inside LLM Foundry's eval, with an MPT and an HF model, they run in tests/eval/test_gauntlet_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from limit_foundry.data.templates import wrap
from limit_foundry.errors import ConfigError, DataError
from limit_foundry.eval.icl import OpenEndedGenerationDataset, ResponsePerplexityDataset
from limit_foundry.generate.output import OutputConflictError

ROWS = [
    {"prompt": wrap("Name a colour."), "response": "Blue is a colour."},
    {"prompt": "What is two plus two?", "response": "Four."},  # bare: wrapped with the LIMA test template
    {"conversations": ["Say hello.", "Hello there, friend!"]},  # LIMA layout
]
QUESTIONS = [
    "What is Python?",
    "Name three colors.",
    "Why is the sky blue during the day, and red at sunset?",
]


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_gpt2_dir).eval(), AutoTokenizer.from_pretrained(
        tiny_gpt2_dir
    )


def _jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _perplexity_dataset(
    tokenizer, tmp_path: Path, path: str, max_seq_len: int, **overrides
) -> ResponsePerplexityDataset:
    """Built with the keyword arguments LLM Foundry's `build_icl_evaluators` passes."""
    kwargs = {
        "dataset_uri": path,
        "tokenizer": tokenizer,
        "max_seq_len": max_seq_len,
        "pad_tok_id": tokenizer.pad_token_id,
        "num_fewshot": 0,
        "destination_path": str(tmp_path / "copy.jsonl"),
    }
    return ResponsePerplexityDataset(**{**kwargs, **overrides})


def _composer_icl_forward(model, batch):
    """What Composer's eval_forward does for `icl_task` batches: labels shifted left by one, logits out."""
    labels = batch["labels"].clone()
    labels[:, :-1] = labels[:, 1:].clone()
    labels[:, -1] = -100
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"].long()).logits
    return logits, labels


def test_response_perplexity_equals_unbatched_conditional_perplexity(gpt2, tmp_path: Path) -> None:
    from limit_foundry.eval.metrics import ResponsePerplexity

    model, tokenizer = gpt2
    dataset = _perplexity_dataset(tokenizer, tmp_path, _jsonl(tmp_path / "rows.jsonl", ROWS), 256)
    metric = ResponsePerplexity()
    batch = dataset.collate_fn([dataset[i] for i in range(len(dataset))])
    logits, labels = _composer_icl_forward(model, batch)
    metric.update(batch, logits, labels)

    nll, tokens = 0.0, 0
    for row in ROWS:
        prompt, response = (row["prompt"], row["response"]) if "prompt" in row else row["conversations"]
        context = tokenizer(wrap(prompt))["input_ids"]
        target = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([context + target])
        with torch.no_grad():
            log_probs = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
        nll -= sum(log_probs[len(context) + i - 1, t].item() for i, t in enumerate(target))
        tokens += len(target)
    assert metric.compute().item() == pytest.approx(float(torch.exp(torch.tensor(nll / tokens))), rel=1e-5)
    assert metric.total.item() == 3 and metric.truncated.item() == 0
    assert not (tmp_path / "copy.jsonl").exists()  # a local file is read in place, not copied


def test_response_perplexity_counts_truncated_responses(gpt2, tmp_path: Path) -> None:
    model, tokenizer = gpt2
    long_row = {"prompt": "Tell me everything.", "response": "word " * 200}
    dataset = _perplexity_dataset(tokenizer, tmp_path, _jsonl(tmp_path / "long.jsonl", [long_row]), 32)
    batch = dataset.collate_fn([dataset[0]])
    assert batch["truncated"].tolist() == [True]
    assert len(batch["continuation_indices"][0]) == 31  # one context token is always kept


def test_response_perplexity_names_the_bad_line(gpt2, tmp_path: Path) -> None:
    _, tokenizer = gpt2
    path = _jsonl(tmp_path / "bad.jsonl", [ROWS[0], {"prompt": "only a prompt"}])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: needs string `prompt` and `response`"):
        _perplexity_dataset(tokenizer, tmp_path, path, 64)
    with pytest.raises(ConfigError, match=r"num_fewshot must be \[0\]"):
        _perplexity_dataset(tokenizer, tmp_path, path, 64, num_fewshot=3)


def _generation_dataset(tokenizer, tmp_path: Path, **overrides) -> OpenEndedGenerationDataset:
    kwargs = {
        "dataset_uri": _jsonl(tmp_path / "questions.jsonl", [{"instruction": q} for q in QUESTIONS]),
        "tokenizer": tokenizer,
        "max_seq_len": 256,
        "pad_tok_id": tokenizer.pad_token_id,
        "num_fewshot": 0,
        "destination_path": str(tmp_path / "copy.jsonl"),
        "output_path": str(tmp_path / "answers.json"),
        "generator": "tiny-gpt2",
        "seeds": [0, 1],
        "generation_kwargs": {
            "max_new_tokens": 10,
            "temperature": 0.7,
            "top_p": 0.9,
            "repetition_penalty": 1.2,
        },
    }
    return OpenEndedGenerationDataset(**{**kwargs, **overrides})


def test_open_ended_answers_equal_limit_foundry_generate_and_reach_the_judge_format(
    gpt2, tmp_path: Path
) -> None:
    from limit_foundry.eval.metrics import OpenEndedGeneration
    from limit_foundry.generate.engine import generate_batch

    model, tokenizer = gpt2
    dataset = _generation_dataset(tokenizer, tmp_path)
    assert len(dataset) == 6
    metric = OpenEndedGeneration()
    for start in (0, 4):  # two batches of different sizes, as a DataLoader with batch size 4 makes
        batch = dataset.collate_fn([dataset[i] for i in range(start, min(start + 4, len(dataset)))])
        kwargs = dict(batch["generation_kwargs"])
        with torch.no_grad():  # what Composer's HuggingFaceModel.generate does with a `generate` batch
            model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)
        metric.update(batch, [], batch["labels"])
    assert metric.compute().item() == 6

    records = json.loads((tmp_path / "answers.json").read_text())
    assert [(r["prompt_id"], r["seed"]) for r in records] == sorted(
        (f"questions-{i:03d}", s) for i in range(3) for s in (0, 1)
    )
    assert {k for r in records for k in r} >= {
        "instruction",
        "output",
        "generator",
        "dataset",
        "datasplit",
        "seed",
        "prompt_id",
    }
    assert {r["instruction"] for r in records} == set(QUESTIONS)  # the bare question, no template
    assert {r["generator"] for r in records} == {"tiny-gpt2"}

    reference = generate_batch(model, tokenizer, dataset.rows, dataset.settings, [tokenizer.eos_token_id])
    expected = {(it.prompt.prompt_id, it.seed): g for it, g in zip(dataset.rows, reference, strict=True)}
    for record in records:
        generation = expected[(record["prompt_id"], record["seed"])]
        assert (record["output"], record["finish_reason"], record["output_tokens"]) == (
            generation.text,
            generation.finish_reason,
            generation.output_tokens,
        )


def test_open_ended_resumes_and_refuses_another_runs_output(gpt2, tmp_path: Path) -> None:
    _, tokenizer = gpt2
    first = _generation_dataset(tokenizer, tmp_path)
    done = first.rows[0]
    first.sink.add([{"prompt_id": done.prompt.prompt_id, "seed": done.seed, "output": "kept"}])
    with pytest.raises(OutputConflictError, match="another generation run is writing"):
        _generation_dataset(tokenizer, tmp_path)  # the first one still holds the output
    first.sink.close()  # as when its process ends
    resumed = _generation_dataset(tokenizer, tmp_path)
    assert len(resumed) == 5 and (done.prompt.prompt_id, done.seed) not in {
        (i.prompt.prompt_id, i.seed) for i in resumed.rows
    }
    resumed.sink.close()
    with pytest.raises(OutputConflictError, match="answers.json: holds another run's results"):
        _generation_dataset(tokenizer, tmp_path, generator="someone-else")
