"""The mcli run built from a resolved config: integrations, command, compute, and no secrets."""

from __future__ import annotations

import pytest

from limit_foundry.study.platform import (
    FOUNDRY_REF,
    PARAMETERS_PATH,
    PlatformError,
    PlatformTarget,
    SourceRepo,
    build_run,
    repo_slug_from_remote,
    run_command,
    to_run_config,
)

SOURCE = SourceRepo(slug="acme/limit-foundry", commit="0" * 40)
PARAMETERS = {
    "run_name": "Limit MPT7B_Mix",
    "variables": {"recipe": "instruct_v1_5k_lima", "data_root": "data"},
}


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("git@github.com:acme/limit-foundry.git", "acme/limit-foundry"),
        ("https://github.com/acme/limit-foundry.git", "acme/limit-foundry"),
        ("https://github.com/acme/limit-foundry", "acme/limit-foundry"),
        ("ssh://git@github.com/acme/limit.foundry/", "acme/limit.foundry"),
    ],
)
def test_repo_slug_from_github_remotes(url: str, slug: str) -> None:
    assert repo_slug_from_remote(url) == slug


def test_non_github_remote_asks_for_repo_option() -> None:
    with pytest.raises(PlatformError, match="--repo"):
        repo_slug_from_remote("https://gitlab.com/acme/limit-foundry.git")


def test_run_clones_foundry_release_and_this_commit() -> None:
    run = build_run(PARAMETERS, PlatformTarget(cluster="c1", gpus=8, gpu_type="a100_80gb"), SOURCE)
    foundry, ours = run["integrations"]
    assert (foundry["git_repo"], foundry["git_branch"]) == ("mosaicml/llm-foundry", FOUNDRY_REF)
    assert (ours["git_repo"], ours["git_commit"]) == (SOURCE.slug, SOURCE.commit)
    assert run["compute"] == {"cluster": "c1", "gpus": 8, "gpu_type": "a100_80gb"}
    assert run["scheduling"]["resumable"] is True
    assert run["parameters"] is PARAMETERS


def test_command_builds_the_recipe_then_trains_the_mounted_parameters() -> None:
    lines = run_command(PARAMETERS, build_data=True).splitlines()
    assert lines[-2] == "python -m limit_foundry.cli data --recipe instruct_v1_5k_lima --out data"
    assert lines[-1] == f"composer -m limit_foundry.cli.train {PARAMETERS_PATH}"
    assert "build_datasets" not in run_command(PARAMETERS, build_data=False)
    quoted = run_command({"variables": {"recipe": "instruct_v1:40,lima:all", "data_root": "d r"}}, True)
    assert "--recipe instruct_v1:40,lima:all --out 'd r'" in quoted


def test_credential_env_vars_are_refused() -> None:
    target = PlatformTarget(cluster="c1", gpus=8, env={"HF_TOKEN": "hf_abc", "WANDB_PROJECT": "x"})
    with pytest.raises(PlatformError, match=r"\['HF_TOKEN'\].*mcli create secret"):
        build_run(PARAMETERS, target, SOURCE)


def test_zero_gpus_refused() -> None:
    with pytest.raises(PlatformError, match="--gpus"):
        build_run(PARAMETERS, PlatformTarget(cluster="c1", gpus=0), SOURCE)


def test_mcli_cleans_the_run_name_and_rejects_a_bad_image() -> None:
    from mcli.models.run_config import FinalRunConfig

    run = build_run(PARAMETERS, PlatformTarget(cluster="c1", gpus=8), SOURCE)
    final = FinalRunConfig.finalize_config(to_run_config(run))
    assert final.name == "limit-mpt7b-mix"
    run["image"] = "not a valid image!"
    with pytest.raises(PlatformError, match="mcli rejects the run"):
        to_run_config(run)
