"""`python -m limit_foundry.submit`: every paper config becomes a valid mcli run; submission reaches mcli."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from limit_foundry import submit
from limit_foundry.config import compose_config, resolved_dict
from limit_foundry.study.platform import PARAMETERS_PATH

REPO_ROOT = Path(__file__).resolve().parent.parent
PAPER_CONFIGS = sorted(p.name for p in (REPO_ROOT / "yamls").glob("mpt*_*.yaml"))
COMMIT = "1" * 40
TARGET_ARGS = ["--cluster", "r1z1", "--gpus", "8", "--repo", "acme/limit-foundry", "--commit", COMMIT]


def test_all_eight_paper_configs_are_found() -> None:
    assert len(PAPER_CONFIGS) == 8


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_dry_run_is_a_valid_mcli_run_config(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from mcli import RunConfig
    from mcli.models.run_config import FinalRunConfig

    config = REPO_ROOT / "yamls" / name
    assert submit.main([str(config), *TARGET_ARGS, "--dry-run"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    final = FinalRunConfig.finalize_config(RunConfig.from_dict(printed))
    api_input = final.to_create_run_api_input()["runInput"]

    assert final.parameters == resolved_dict(compose_config(config))  # exactly the composed config
    assert final.parameters["run_name"] == final.name
    assert final.command.rstrip().endswith(f"composer train.py {PARAMETERS_PATH}")
    assert final.compute == {"cluster": "r1z1", "gpus": 8}
    assert final.scheduling["resumable"] is True
    repos = {i["git_repo"]: i for i in final.integrations}
    assert repos["mosaicml/llm-foundry"]["git_branch"] == "v0.22.0"
    assert repos["acme/limit-foundry"]["git_commit"] == COMMIT
    assert api_input["runName"] == final.name and api_input["parameters"] == final.parameters


def test_overrides_reach_the_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        str(REPO_ROOT / "yamls/mpt7b_lima.yaml"),
        "variables.save_root=s3://bucket/runs",
        *TARGET_ARGS,
        "--dry-run",
    ]
    assert submit.main(args) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["parameters"]["save_folder"] == "s3://bucket/runs/limit-mpt7b-lima/checkpoints"


def test_submit_hands_mcli_the_run_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import mcli

    created = []

    def fake_create_run(run_config: mcli.RunConfig) -> mcli.RunConfig:  # the network boundary
        created.append(run_config)
        return run_config

    monkeypatch.setattr(mcli, "create_run", fake_create_run)
    monkeypatch.setenv("MOSAICML_API_KEY", "test-key-not-real")
    assert (
        submit.main([str(REPO_ROOT / "yamls/mpt30b_mix.yaml"), *TARGET_ARGS, "--env", "WANDB_PROJECT=limit"])
        == 0
    )
    (run_config,) = created
    assert isinstance(run_config, mcli.RunConfig)
    assert run_config.name == "limit-mpt30b-mix"
    assert run_config.env_variables == {"WANDB_PROJECT": "limit"}
    assert "test-key-not-real" not in yaml.safe_dump(run_config.parameters)


def test_missing_api_key_refused_before_submission(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MOSAICML_API_KEY"}
    env["MCLI_CONFIG_PATH"] = str(tmp_path / "mcli_config")  # mcli's documented config override
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "limit_foundry.submit",
            str(REPO_ROOT / "yamls/mpt7b_lima.yaml"),
            *TARGET_ARGS,
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "MOSAICML_API_KEY" in proc.stderr


def test_secret_env_and_missing_config_fail_naming_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        submit.main(
            [str(REPO_ROOT / "yamls/mpt7b_lima.yaml"), *TARGET_ARGS, "--env", "HF_TOKEN=x", "--dry-run"]
        )
        == 2
    )
    assert "HF_TOKEN" in capsys.readouterr().err
    assert submit.main([str(REPO_ROOT / "yamls/nope.yaml"), *TARGET_ARGS, "--dry-run"]) == 2
    assert "nope.yaml" in capsys.readouterr().err
