"""`limit-foundry submit`: every paper config becomes a valid mcli run; submission reaches mcli."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from limit_foundry.cli import submit
from limit_foundry.config import compose_config, resolved_dict
from limit_foundry.study.platform import PARAMETERS_PATH

REPO_ROOT = Path(__file__).resolve().parents[2]
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
    assert final.command.rstrip().endswith(f"composer -m limit_foundry.cli.train {PARAMETERS_PATH}")
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


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_run_clones_the_users_project_not_the_package(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repository and commit come from the working directory (or --project-dir), wherever the package is."""
    project = tmp_path / "my-study"
    project.mkdir()
    _git(project, "init", "-q")
    _git(project, "remote", "add", "origin", "git@github.com:someone/my-study.git")
    (project / "notes.txt").write_text("v1\n")
    _git(project, "add", "notes.txt")
    _git(project, "-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "first")
    head = _git(project, "rev-parse", "HEAD")
    config = str(REPO_ROOT / "yamls/mpt7b_lima.yaml")

    monkeypatch.chdir(project)
    assert submit.main([config, "--cluster", "c1", "--gpus", "8", "--dry-run"]) == 0
    captured = capsys.readouterr()
    repos = {i["git_repo"]: i for i in yaml.safe_load(captured.out)["integrations"]}
    assert repos["someone/my-study"]["git_commit"] == head
    assert captured.err == ""

    (project / "notes.txt").write_text("v2\n")  # an uncommitted change is warned about
    monkeypatch.chdir(tmp_path)
    args = [config, "--cluster", "c1", "--gpus", "8", "--project-dir", str(project), "--dry-run"]
    assert submit.main(args) == 0
    captured = capsys.readouterr()
    assert yaml.safe_load(captured.out)["integrations"][1]["git_repo"] == "someone/my-study"
    assert f"warning: uncommitted changes in {project}; the run uses commit {head}" in captured.err


def test_a_directory_outside_git_asks_for_repo_and_commit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # no enclosing checkout is found
    config = str(REPO_ROOT / "yamls/mpt7b_lima.yaml")
    assert submit.main([config, "--cluster", "c1", "--gpus", "8", "--dry-run"]) == 2
    assert "pass --repo owner/name" in capsys.readouterr().err
    args = [config, "--cluster", "c1", "--gpus", "8", "--repo", "a/b", "--dry-run"]
    assert submit.main(args) == 2
    assert "pass --commit SHA" in capsys.readouterr().err
