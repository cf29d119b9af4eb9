"""Fault injection for `limit-foundry judge {run,report,calibrate}`, end to end through the CLI (in the test
process; one row also as `python -m limit_foundry.cli judge ...` in a subprocess): each bad input or fault gives its exit code (0 ok, 1 finished with failures or partial, 2 bad input,
3 server unreachable or refusing) and an `error:`/`report:` line naming what is wrong, never a traceback."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_faults import CliRun, run_cli

from limit_foundry.testing.fake_openai import FakeOpenAIServer

API_KEY = "sk-faults-test"
MODEL = "fake-judge"


def _answers(generator: str, prefix: str) -> list[dict]:
    return [
        {"instruction": f"Q{i}?", "output": f"{prefix} answer {i}", "generator": generator}
        | {"prompt_id": f"p{i}", "seed": 0}
        for i in range(2)
    ]


def _unit(prompt_id: str, outcome: str) -> dict:
    """One judgments.jsonl record in order AB, as `run` writes it."""
    return {
        "key": f"{prompt_id}|0|AB",
        "prompt_id": prompt_id,
        "seed": 0,
        "instruction": f"Q{prompt_id}?",
        "order": "AB",
        "generator_a": "model-a",
        "generator_b": "model-b",
        "status": "ok",
        "outcome": outcome,
        "slot_outcome": 1 if outcome == "A" else 2,
        "no_call_reason": None,
        "failure": None,
        "cost_usd": 0.0,
    }


def _result_dir(path: Path, units: list[dict], **run: object) -> None:
    path.mkdir(parents=True)
    (path / "judgments.jsonl").write_text("".join(json.dumps(u) + "\n" for u in units))
    (path / "run.json").write_text(json.dumps({"order_policy": "single-seeded", "partial": False} | run))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("faults")
    (d / "a.json").write_text(json.dumps(_answers("model-a", "A")))
    (d / "b.json").write_text(json.dumps(_answers("model-b", "B, longer")))
    (d / "a_file").write_text("not a directory")
    (d / "not_a_model").mkdir()
    (d / "bad_model").mkdir()
    (d / "bad_model" / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    _result_dir(d / "complete", [_unit("p0", "B"), _unit("p1", "A")])
    (d / "empty_run").mkdir()
    (d / "empty_run" / "judgments.jsonl").write_text("")
    (d / "empty_run" / "run.json").write_text(json.dumps({"state": "aborted", "partial": True}))
    interrupted = {
        "state": "interrupted",
        "partial": True,
        "planned_pairs": [["p0", 0], ["p1", 0], ["p2", 0]],
    }
    _result_dir(d / "interrupted", [_unit("p0", "B")], summary={"units": 3}, **interrupted)
    (d / "empty.json").write_text("[]")
    annotation = {"instruction": "Qp0?", "output_1": "x", "generator_1": "model-a", "output_2": "y"}
    (d / "annotations.json").write_text(
        json.dumps([annotation | {"generator_2": "model-b", "preference": 2}])
    )
    return d


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models=(MODEL,), api_key=API_KEY) as running:
        yield running


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


RUN = "run --a {d}/a.json --b {d}/b.json --model fake-judge --base-url {url} --backoff-base 0.01 --no-cache"


def case(name: str, arguments: str, exit_code: int, fragment: str, api_key: str = API_KEY):
    """One row of the table: the arguments after `judge`, the exit code and a fragment of stderr."""
    return pytest.param(arguments, exit_code, fragment, api_key, id=name)


CASES = [
    case("run_ok", RUN + " --out {tmp}/out --price-input 1 --price-output 1", 0, ""),
    case("max_cost_nan", RUN + " --out {tmp}/out --max-cost nan", 2, "--max-cost must be a finite amount"),
    case(
        "max_cost_negative", RUN + " --out {tmp}/out --max-cost -1", 2, "--max-cost must be a finite amount"
    ),
    case("out_is_a_file", RUN + " --out {d}/a_file", 2, "is a file, not a result directory"),
    case("out_under_a_file", RUN + " --out {d}/a_file/sub", 2, "cannot create the directory"),
    case("self_comparison", RUN.replace("b.json", "a.json") + " --out {tmp}/out", 2, "identical answers"),
    case("missing_answers", RUN.replace("a.json", "nowhere.json") + " --out {tmp}/out", 2, "nowhere.json"),
    case("wrong_key", RUN + " --out {tmp}/out", 3, "not authorised", api_key="sk-wrong"),
    case("closed_port", RUN.replace("{url}", "{closed}") + " --out {tmp}/out", 3, "server unreachable"),
    case(
        "hf_not_a_model", RUN + " --out {tmp}/out --backend hf --model {d}/not_a_model", 2, "no config.json"
    ),
    case("hf_bad_model", RUN + " --out {tmp}/out --backend hf --model {d}/bad_model", 2, "cannot load it"),
    case("report_ok", "report {d}/complete --out {tmp}/r --no-plot", 0, ""),
    case("report_no_judgments", "report {d}/empty_run --out {tmp}/r --no-plot", 2, "no judgments recorded"),
    case("report_not_a_run", "report {d}/not_a_model --out {tmp}/r --no-plot", 2, "no judgments log"),
    case("report_empty_alpaca_eval", "report --alpaca-eval {d}/empty.json --out {tmp}/r", 2, "no judgments"),
    case(
        "report_partial", "report {d}/interrupted --out {tmp}/r --no-plot --max-failure-rate 1", 1, "partial"
    ),
    case(
        "report_partial_allowed",
        "report {d}/interrupted --out {tmp}/r --no-plot --max-failure-rate 1 --allow-partial",
        0,
        "",
    ),
    case(
        "report_out_is_a_file", "report {d}/complete --out {d}/a_file --no-plot", 2, "cannot write the report"
    ),
    case(
        "calibrate_empty_reference", "calibrate {d}/annotations.json --reference {d}/empty.json", 2, "nothing"
    ),
    case(
        "calibrate_generations_reference",
        "calibrate {d}/annotations.json --reference {d}/a.json",
        2,
        "nothing",
    ),
    case(
        "calibrate_missing_judge", "calibrate {d}/nowhere.json --reference {d}/annotations.json", 2, "nowhere"
    ),
]


def check_judge_fault(
    run: CliRun, inputs: Path, server: FakeOpenAIServer, tmp_path: Path, row: tuple[str, int, str, str]
) -> None:
    arguments, exit_code, fragment, api_key = row
    filled = arguments.format(
        d=inputs, tmp=tmp_path, url=server.base_url, closed=f"http://127.0.0.1:{_closed_port()}/v1"
    )
    done = run(["judge", *filled.split()], cwd=tmp_path, env={"OPENAI_API_KEY": api_key})
    assert done.returncode == exit_code, done.stderr
    assert fragment in done.stderr and "Traceback" not in done.stderr
    if exit_code == 2:
        assert "error:" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize(("arguments", "exit_code", "fragment", "api_key"), CASES)
def test_judge_fault(inputs, server, tmp_path, arguments, exit_code, fragment, api_key, cli_in_process):
    row = (arguments, exit_code, fragment, api_key)
    check_judge_fault(cli_in_process, inputs, server, tmp_path, row)


@pytest.mark.slow
def test_a_judge_fault_through_python_m(inputs, server, tmp_path):
    """The same check in a fresh `python -m limit_foundry.cli judge`: the refused key's exit status 3 arrives."""
    [wrong_key] = [c for c in CASES if c.id == "wrong_key"]
    check_judge_fault(run_cli, inputs, server, tmp_path, wrong_key.values)
