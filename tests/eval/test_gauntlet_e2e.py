"""`make gauntlet` end to end: tiny models through the documented CLI on the real benchmark files.

The slow test runs three checkpoint kinds in one process (an MPT directory via `limit_hf_mpt`, a GPT-2
via `hf_causal_lm`, a Composer `.pt` via `mpt_causal_lm`) with both custom evaluators, on the
../shared copy of the benchmark files, which lacks mmlu, hellaswag, squad and
bigbench_elementary_math_qa. The fast tests check that bad input stops the run before any model work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from limit_foundry.eval.gauntlet import main

MISSING = {
    "mmlu": "world_knowledge",
    "hellaswag": "language_understanding",
    "squad": "reading_comprehension",
    "bigbench_elementary_math_qa": "symbolic_problem_solving",
}
LIMIT = 2


def _train_yaml(path: Path) -> Path:
    """The training YAML a Composer checkpoint of the tiny MPT would come with."""
    from limit_foundry.models.tiny import TINY_MPT_CONFIG, TINY_TOKENIZER_DIR

    model = {"name": "mpt_causal_lm", **TINY_MPT_CONFIG, "loss_fn": "torch_crossentropy"}
    path.write_text(yaml.safe_dump({"model": model, "tokenizer": {"name": str(TINY_TOKENIZER_DIR)}}))
    return path


def _extra_tasks(directory: Path, shared_dir: Path) -> Path:
    """Both custom evaluators on real data: Instruct-v1 responses and three LIMIT Instruct-v3 test prompts."""
    directory.mkdir()
    rows = (
        (shared_dir / "data" / "instruct_v1" / "dolly_hhrlhf_train_small.jsonl").read_text().splitlines()[:4]
    )
    (directory / "instruct_v1.jsonl").write_text("\n".join(rows) + "\n")
    prompts = (shared_dir / "data" / "limit_test_prompts" / "instructv3_test_prompts.txt").read_text()
    starts = [i for i in range(len(prompts)) if prompts.startswith("Below is an instruction", i)]
    (directory / "instructv3_test_prompts.txt").write_text(prompts[: starts[3]])
    tasks = [
        {
            "label": "instruct_v1_ppl",
            "icl_task_type": "response_perplexity",
            "dataset_uri": "instruct_v1.jsonl",
            "num_fewshot": [0],
            "metric_names": ["ResponsePerplexity"],
        },
        {
            "label": "instruct_v3_answers",
            "icl_task_type": "open_ended_generation",
            "dataset_uri": "instructv3_test_prompts.txt",
            "prompt_set": "instruct_v3_test",
            "num_fewshot": [0],
            "metric_names": ["OpenEndedGeneration"],
            "seeds": [0],
            "generation_kwargs": {
                "max_new_tokens": 8,
                "temperature": 0.7,
                "top_p": 0.9,
                "repetition_penalty": 1.2,
            },
        },
    ]
    (directory / "extra.yaml").write_text(yaml.safe_dump({"icl_tasks": tasks}))
    return directory / "extra.yaml"


@pytest.mark.slow
def test_make_gauntlet_end_to_end(
    tmp_path: Path,
    shared_dir: Path,
    gauntlet_data_dir: Path,
    tiny_hub_mpt_dir: Path,
    tiny_gpt2_dir: Path,
    tiny_composer_checkpoint: Path,
) -> None:
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    models = f"mpt={tiny_hub_mpt_dir},gpt2={tiny_gpt2_dir},composer={tiny_composer_checkpoint}"
    command = [
        sys.executable,
        "-m",
        "limit_foundry.eval.gauntlet",
        "run",
        "--model",
        models,
        "--train-yaml",
        str(_train_yaml(tmp_path / "train.yaml")),
        "--gauntlet",
        "v0",
        "--limit",
        str(LIMIT),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--extra-tasks",
        str(_extra_tasks(tmp_path / "extra", shared_dir)),
    ]
    env = {**os.environ, "GAUNTLET_DATA_DIR": str(gauntlet_data_dir)}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in MISSING:  # listed up front, before any model work
        assert f"({name}, {MISSING[name]}): skipped, category reported incomplete" in done.stderr
    assert "mpt [1/" in done.stderr  # per-evaluator progress bars

    results = json.loads((out / "results.json").read_text())
    assert {m["benchmark"]: m["category"] for m in results["data"]["missing"]} == MISSING
    assert all(f["matches_pin"] and f["rows_used"] <= LIMIT for f in results["data"]["files"].values())
    assert [m["model_id"] for m in results["models"]] == ["mpt", "gpt2", "composer"]
    for model in results["models"]:
        for category, entry in model["categories"].items():
            assert entry["complete"] == (category not in MISSING.values())
            assert entry["score"] is not None
        assert not model["averages"]["average"]["complete"]
        by_name = {b["name"]: b for b in model["benchmarks"]}
        assert {n for n, b in by_name.items() if b["status"] == "missing_data"} == set(MISSING)
        assert all(b["n_examples"] == LIMIT for n, b in by_name.items() if n not in MISSING)
        assert len(by_name["jeopardy"]["subcategories"]) == LIMIT
        assert model["checkpoint"]["sha256"]
        perplexity = model["beside_gauntlet"]["instruct_v1_ppl"]
        assert perplexity["n_examples"] == 4 and perplexity["value"] > 1
        answers = json.loads(Path(model["beside_gauntlet"]["instruct_v3_answers"]["answers"]).read_text())
        assert len(answers) == 3 and {a["generator"] for a in answers} == {model["model_id"]}
        assert all(
            a["dataset"] == "instruct_v3" and not a["instruction"].startswith("Below") for a in answers
        )

    mpt, _, composer = results["models"]  # the same weights through two loaders give the same numbers
    assert (
        mpt["beside_gauntlet"]["instruct_v1_ppl"]["value"]
        == composer["beside_gauntlet"]["instruct_v1_ppl"]["value"]
    )
    assert [b["accuracy"] for b in mpt["benchmarks"]] == [b["accuracy"] for b in composer["benchmarks"]]

    table = (out / "results.md").read_text()
    assert (
        "| mpt |" in table and "(partial 5/6)" in table and "world_knowledge / mmlu (missing data)" in table
    )
    assert (out / "gauntlet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (
        list(cwd.iterdir()) == [] and not (out / ".work").exists()
    )  # eval's scratch files stayed in OUT/.work

    # Re-scoring the saved raw metrics needs no model and gives the same scores.
    assert (
        main(["score", "--metrics", f"gpt2={out / 'gpt2' / 'RAW.json'}", "--out", str(tmp_path / "rescored")])
        == 0
    )
    rescored = json.loads((tmp_path / "rescored" / "results.json").read_text())["models"][0]
    assert (
        rescored["categories"]["commonsense_reasoning"]
        == results["models"][1]["categories"]["commonsense_reasoning"]
    )
    assert rescored["averages"]["average"]["score"] == results["models"][1]["averages"]["average"]["score"]


def test_unknown_gauntlet_version_stops_before_model_work(
    tiny_gpt2_dir: Path, tmp_path: Path, capsys
) -> None:
    assert main(["run", "--model", str(tiny_gpt2_dir), "--gauntlet", "v7", "--out", str(tmp_path)]) == 2
    assert "unknown Gauntlet version 'v7'" in capsys.readouterr().err


def test_a_checkpoint_without_weights_is_named(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert main(["run", "--model", f"mine={broken}", "--out", str(tmp_path / "out")]) == 2
    assert f"mine ({broken}): no weights" in capsys.readouterr().err


def test_a_composer_checkpoint_needs_its_training_yaml(
    tiny_composer_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    assert main(["run", "--model", str(tiny_composer_checkpoint), "--out", str(tmp_path)]) == 2
    assert "needs --train-yaml" in capsys.readouterr().err


def test_a_corrupt_benchmark_file_is_named_before_model_work(
    tiny_gpt2_dir: Path, tmp_path: Path, capsys
) -> None:
    data = tmp_path / "data" / "commonsense_reasoning"
    data.mkdir(parents=True)
    (data / "copa.jsonl").write_text('{"query": "q", "choices": ["a", "b"], "gold": 0}\n{"query": \n')
    code = main(
        [
            "run",
            "--model",
            str(tiny_gpt2_dir),
            "--out",
            str(tmp_path / "out"),
            "--data-dir",
            str(tmp_path / "data"),
        ]
    )
    assert code == 2
    assert "copa.jsonl:2: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_no_benchmark_files_at_all_points_to_gauntlet_data(
    tiny_gpt2_dir: Path, tmp_path: Path, capsys
) -> None:
    code = main(
        ["run", "--model", str(tiny_gpt2_dir), "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path)]
    )
    assert code == 2
    assert "make gauntlet-data" in capsys.readouterr().err
