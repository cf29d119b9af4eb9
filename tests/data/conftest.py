"""Fixtures for the data tests: small source files in the real formats, and the shared real data."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import pytest

from limit_foundry.data.templates import INSTRUCT_V1_TEMPLATE

BAD_ROWS = Path(__file__).resolve().parents[1] / "fixtures" / "bad_rows"


def _write_jsonl(path: Path, records: list) -> Path:
    """Write records (dicts, or raw strings written as they are) one per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for record in records:
            f.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


def v1_row(i: int, padding_words: int = 0) -> dict:
    instruction = f"Explain topic number {i}" + " more" * padding_words
    return {
        "prompt": INSTRUCT_V1_TEMPLATE.format(instruction=instruction),
        "response": f"Topic {i} is explained.",
    }


def lima_row(i: int, source: str = "stackexchange") -> dict:
    return {"conversations": [f"How does thing {i} work?", f"Thing {i} works like this."], "source": source}


@pytest.fixture(scope="session")
def write_jsonl():
    """`write_jsonl(path, records)`: dicts as JSON lines, strings written as they are."""
    return _write_jsonl


@pytest.fixture(scope="session")
def make_v1_row():
    """`make_v1_row(i, padding_words=0)`: an Instruct-v1 row; padding words lengthen its prompt."""
    return v1_row


@pytest.fixture
def sources(tmp_path: Path) -> dict[str, str]:
    """Local copies of lima (12 single-turn + 1 multi-turn), instruct_v1 (40) and instruct_v3 (30, 3 strata)."""
    lima = [lima_row(i, ("stackexchange", "wikihow")[i % 2]) for i in range(12)]
    lima.append({"conversations": ["q1", "a1", "q2", "a2"], "source": "multi_turn"})
    _write_jsonl(tmp_path / "src" / "lima" / "train.jsonl", lima)
    _write_jsonl(
        tmp_path / "src" / "lima" / "test.jsonl",
        [{"conversations": [f"Test question {i}?"]} for i in range(5)],
    )
    _write_jsonl(tmp_path / "src" / "instruct_v1.jsonl", [v1_row(i) for i in range(40)])
    strata = ["dolly_hhrlhf"] * 20 + ["competition_math"] * 7 + ["spider"] * 3
    v3 = [{**v1_row(100 + i), "source": s} for i, s in enumerate(strata)]
    _write_jsonl(tmp_path / "src" / "instruct_v3" / "train.jsonl", v3)
    return {
        "lima": str(tmp_path / "src" / "lima"),
        "instruct_v1": str(tmp_path / "src" / "instruct_v1.jsonl"),
        "instruct_v3": str(tmp_path / "src" / "instruct_v3"),
    }


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The project's own sample datasets (limit_foundry/assets/samples)."""
    path = Path(str(files("limit_foundry") / "assets" / "samples"))
    if not path.is_dir():
        pytest.skip(f"sample datasets absent: {path}")
    return path


@pytest.fixture(scope="session")
def bad_rows_dir() -> Path:
    return BAD_ROWS


@pytest.fixture(scope="session")
def real_instruct_v1(shared_dir: Path) -> Path:
    """1,000 real Instruct-v1 rows from ../shared (skipped when absent)."""
    path = shared_dir / "data" / "instruct_v1" / "dolly_hhrlhf_train_small.jsonl"
    if not path.is_file():
        pytest.skip(f"real data absent: {path}")
    return path


@pytest.fixture
def tiny_loader(tmp_path: Path, sources: dict[str, str]):
    """`tiny_loader(packing_ratio=None, device_batch_size=4, **dataset_keys)`: the registered
    `limit_finetuning` loader over `instruct_v1:all,lima:all` (52 rows), tiny tokenizer, max_seq_len 256."""
    from llmfoundry.data.dataloader import build_dataloader

    from limit_foundry.models.tiny import load_tiny_tokenizer

    tokenizer = load_tiny_tokenizer()

    def make(packing_ratio=None, device_batch_size: int = 4, **dataset_keys):
        dataset = {
            "recipe": "instruct_v1:all,lima:all",
            "data_root": str(tmp_path / "data"),
            "build_if_missing": True,
            "source_paths": sources,
            "split": "train",
            "max_seq_len": 256,
            "decoder_only_format": True,
            "shuffle": False,
            "allow_pad_trimming": packing_ratio is not None,
            "packing_ratio": packing_ratio,
            **dataset_keys,
        }
        cfg = {
            "name": "limit_finetuning",
            "dataset": dataset,
            "drop_last": False,
            "num_workers": 0,
            "pin_memory": False,
            "prefetch_factor": None,
            "persistent_workers": False,
        }
        return build_dataloader(cfg, tokenizer, device_batch_size)

    make.tokenizer = tokenizer
    return make
