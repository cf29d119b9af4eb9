"""The mcli run built from a resolved config: integrations, command, compute, no secrets, and the pre-flight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limit_foundry.config import compose_config, resolved_dict
from limit_foundry.errors import ConfigError
from limit_foundry.study.platform import (
    FOUNDRY_REF,
    PARAMETERS_PATH,
    PLATFORM_KEYS,
    THROUGHPUT,
    PlatformError,
    PlatformTarget,
    SourceRepo,
    build_run,
    platform_flags,
    platform_parameters,
    platform_target,
    preflight,
    repo_slug_from_remote,
    run_arithmetic,
    run_command,
    to_run_config,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE = SourceRepo(slug="acme/limit-foundry", commit="0" * 40)
PARAMETERS = {
    "run_name": "Limit MPT7B_Mix",
    "variables": {"recipe": "instruct_v1_5k_lima", "data_root": "data"},
    "autoresume": True,
}
BUCKET = "variables.save_root=s3://bucket/runs"


def paper(name: str, *overrides: str) -> dict:
    """A paper config as a platform run trains it (GPU defaults, a bucket for checkpoints)."""
    return platform_parameters(REPO_ROOT / "yamls" / name, [BUCKET, *overrides])


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


# --- the pre-flight: batch arithmetic --------------------------------------------------------------------


def test_a_global_batch_that_does_not_divide_by_the_gpus_is_refused_naming_the_nearest_counts() -> None:
    with pytest.raises(PlatformError) as err:
        run_arithmetic(paper("mpt30b_mix.yaml"), gpus=16)
    message = str(err.value)
    assert "global_train_batch_size 72 does not divide by 16 GPUs" in message
    assert "4.5 rows per GPU" in message and "nearest valid GPU counts: 12 or 18" in message


def test_a_per_gpu_batch_below_the_microbatch_is_refused() -> None:
    with pytest.raises(PlatformError) as err:
        run_arithmetic(paper("mpt7b_mix.yaml"), gpus=16)  # 48 / 16 = 3 rows per GPU, microbatch 4
    message = str(err.value)
    assert "16 GPUs leave 3 rows per GPU" in message and "device_train_microbatch_size 4" in message
    assert "nearest valid GPU counts: 12" in message  # 48 / 12 = 4: no count above 16 keeps 4 rows per GPU


def test_the_paper_7b_run_on_8_gpus_counts_from_the_recipe() -> None:
    arithmetic = run_arithmetic(paper("mpt7b_mix.yaml"), gpus=8)
    assert (arithmetic.per_device_batch, arithmetic.microbatches_per_step) == (6, 2)
    assert arithmetic.data.rows == 6_000 and "paper's row count" in arithmetic.data.source
    assert (arithmetic.steps_per_epoch(), arithmetic.total_steps()) == (125, 1_250)
    assert arithmetic.padded_tokens_per_step == 48 * 2048
    expected_hours = 1_250 * 48 * 2048 / THROUGHPUT["7b"].tokens_per_gpu_s / 3600
    assert arithmetic.gpu_hours() == pytest.approx(expected_hours)
    text = "\n".join(arithmetic.lines())
    assert "global 48 = 8 GPUs x 6 rows; microbatch 4 -> 2 microbatches per step" in text
    assert "6,000 rows" in text and "125 steps per epoch, 1,250 steps in 10 epochs" in text
    assert "98,304 padded (48 rows x 2,048)" in text
    assert f"~{expected_hours:,.1f} GPU-hours" in text and "LLM Foundry's MPT benchmarks" in text


def test_the_30b_run_uses_the_30b_throughput() -> None:
    arithmetic = run_arithmetic(paper("mpt30b_mix.yaml"), gpus=8)
    assert (arithmetic.per_device_batch, arithmetic.microbatches_per_step) == (9, 9)
    assert arithmetic.throughput == THROUGHPUT["30b"]
    assert arithmetic.total_steps() == 2_000 // 72 * 10


def test_a_built_datasets_manifest_counts_rows_and_tokens(tmp_path: Path) -> None:
    dataset = tmp_path / "data" / "paper_instruct_v1_5k_lima"  # the paper configs train on the released data
    dataset.mkdir(parents=True)
    manifest = {
        "splits": {"train": {"rows": 5_990}},
        "tokenizer": {"stats": {"train": {"total_tokens": {"mean": 200.0}}}},
    }
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    arithmetic = run_arithmetic(paper("mpt7b_mix.yaml"), gpus=8, data_root=tmp_path / "data")
    assert arithmetic.data.rows == 5_990 and arithmetic.data.source == str(dataset / "manifest.json")
    assert arithmetic.steps_per_epoch() == 5_990 // 48
    text = "\n".join(arithmetic.lines())
    assert "~9,600 of them real (mean row 200 tokens)" in text
    fit = arithmetic.fit_ratio()
    assert fit == pytest.approx(9.9)  # 0.97 * 2048 / 200, one decimal
    assert f"packing_ratio: fit would pack ~{fit:g} rows per sequence" in text
    assert f"{int(5_990 // (48 * fit))} steps per epoch" in text


def test_an_unknown_model_gets_no_gpu_hour_estimate() -> None:
    parameters = paper("mpt7b_mix.yaml", "model.pretrained_model_name_or_path=acme/other-llm")
    text = "\n".join(run_arithmetic(parameters, gpus=8).lines())
    assert "no published throughput for acme/other-llm; GPU-hours not estimated" in text


# --- the pre-flight: GPU kernels, checkpoints, restarts -----------------------------------------------------


def test_platform_runs_use_flash_attention_and_the_fused_loss_unless_overridden() -> None:
    parameters = paper("mpt30b_mix.yaml")
    assert (parameters["model"]["attn_impl"], parameters["model"]["loss_fn"]) == (
        "flash",
        "fused_crossentropy",
    )
    local = resolved_dict(compose_config(REPO_ROOT / "yamls/mpt30b_mix.yaml"))
    assert (local["model"]["attn_impl"], local["model"]["loss_fn"]) == ("torch", "torch_crossentropy")
    overridden = paper("mpt30b_mix.yaml", "variables.attn_impl=torch")
    assert (overridden["model"]["attn_impl"], overridden["model"]["loss_fn"]) == (
        "torch",
        "fused_crossentropy",
    )
    tiny = platform_parameters(REPO_ROOT / "yamls/tiny/lima.yaml", [BUCKET])  # declares no kernel variables
    assert "attn_impl" not in tiny["variables"] and tiny["model"]["attn_config"]["attn_impl"] == "torch"


def test_a_local_save_root_is_refused_with_how_to_set_a_bucket() -> None:
    parameters = platform_parameters(REPO_ROOT / "yamls/mpt7b_mix.yaml", [])
    with pytest.raises(PlatformError) as err:
        preflight(parameters, PlatformTarget(cluster="c1", gpus=8), None)
    message = str(err.value)
    assert "save_folder runs/limit-mpt7b-mix/checkpoints" in message
    assert "callbacks.hf_checkpointer.save_folder runs/limit-mpt7b-mix/hf" in message
    assert "lost when the run ends" in message and "variables.save_root=s3://BUCKET/PREFIX" in message
    for scheme in ("s3", "gs", "oci"):
        ok = platform_parameters(
            REPO_ROOT / "yamls/mpt7b_mix.yaml", [f"variables.save_root={scheme}://b/runs"]
        )
        preflight(ok, PlatformTarget(cluster="c1", gpus=8), None)


def test_only_runs_that_can_resume_are_resumable() -> None:
    seven, thirty = paper("mpt7b_mix.yaml"), paper("mpt30b_mix.yaml")
    assert build_run(seven, PlatformTarget(cluster="c1", gpus=8), SOURCE)["scheduling"]["resumable"] is True
    # the paper's 30B checkpoints hold weights only: a restart would begin again at step 0
    assert build_run(thirty, PlatformTarget(cluster="c1", gpus=8), SOURCE)["scheduling"]["resumable"] is False


@pytest.mark.parametrize(
    ("target", "flag"),
    [
        (PlatformTarget(cluster="c1", gpus=8, preemptible=True), "--preemptible"),
        (PlatformTarget(cluster="c1", gpus=8, max_retries=2), "--max-retries 2"),
    ],
)
def test_a_restartable_run_needs_checkpoints_that_resume(target: PlatformTarget, flag: str) -> None:
    with pytest.raises(PlatformError) as err:
        preflight(paper("mpt30b_mix.yaml"), target, None)
    message = str(err.value)
    assert f"{flag} lets the platform restart the run" in message
    assert "save_weights_only: True, autoresume: False" in message and "from step 0" in message
    assert "save_weights_only=false autoresume=true" in message
    full_state = paper("mpt30b_mix.yaml", "save_weights_only=false", "autoresume=true")
    preflight(full_state, target, None)
    assert build_run(full_state, target, SOURCE)["scheduling"]["resumable"] is True
    preflight(paper("mpt7b_mix.yaml"), target, None)  # 7B checkpoints hold the full state


# --- loggers ------------------------------------------------------------------------------------------------


def test_wandb_and_mlflow_add_the_loggers_and_the_platform_integration() -> None:
    from mcli.models.run_config import FinalRunConfig

    target = PlatformTarget(cluster="c1", gpus=8, wandb="limit/acme", mlflow="/Users/me/limit")
    run = build_run(paper("mpt7b_mix.yaml"), target, SOURCE)
    assert run["parameters"]["loggers"] == {
        "wandb": {"project": "limit", "entity": "acme"},
        "mlflow": {"experiment_name": "/Users/me/limit"},
    }
    assert {"integration_type": "wandb", "project": "limit", "entity": "acme"} in run["integrations"]
    assert run["env_variables"] == {"MLFLOW_EXPERIMENT_NAME": "/Users/me/limit"}
    final = FinalRunConfig.finalize_config(to_run_config(run))
    assert [i["integration_type"] for i in final.integrations] == ["git_repo", "git_repo", "wandb"]

    project_only = build_run(
        paper("mpt7b_mix.yaml"), PlatformTarget(cluster="c1", gpus=8, wandb="limit"), SOURCE
    )
    assert project_only["parameters"]["loggers"] == {"wandb": {"project": "limit"}}
    assert project_only["env_variables"] == {"WANDB_PROJECT": "limit"}  # mcli's integration wants an entity
    assert len(project_only["integrations"]) == 2
    FinalRunConfig.finalize_config(to_run_config(project_only))


# --- a study spec's train.platform keys ------------------------------------------------------------------

EVERY_KEY = {
    "cluster": "c1",
    "gpus": 8,
    "gpu_type": "a100_80gb",
    "nodes": 1,
    "image": "mosaicml/llm-foundry:custom",
    "priority": "low",
    "max_retries": 2,
    "preemptible": True,
    "build_data": False,
    "env": {"WANDB_MODE": "offline", "LOG_LEVEL": "info"},
    "project_dir": "/work/project",
    "repo": "acme/limit-foundry",
    "commit": "a" * 40,
    "wandb": "limit/acme",
    "mlflow": "limit-exp",
    "local": "/work/platform-runs",
    "poll": 2,
}


def test_every_platform_key_has_its_flag() -> None:
    assert set(EVERY_KEY) == set(PLATFORM_KEYS)
    assert platform_flags(EVERY_KEY) == [
        *("--cluster", "c1", "--gpus", "8", "--gpu-type", "a100_80gb", "--nodes", "1"),
        *("--image", "mosaicml/llm-foundry:custom", "--priority", "low", "--max-retries", "2"),
        "--preemptible",
        "--no-build-data",
        *("--env", "WANDB_MODE=offline", "--env", "LOG_LEVEL=info"),
        *("--project-dir", "/work/project", "--repo", "acme/limit-foundry", "--commit", "a" * 40),
        *("--wandb", "limit/acme", "--mlflow", "limit-exp"),
        *("--local", "/work/platform-runs", "--poll", "2"),
    ]
    assert platform_flags({"preemptible": False, "build_data": True}) == []  # the defaults: no switch


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"preemptible": "yes"}, "preemptible must be bool, got 'yes'"),
        ({"gpus": True}, "gpus must be int, got True"),
        ({"gpus": "8"}, "gpus must be int, got '8'"),
        ({"env": ["A=1"]}, "env must be dict"),
        ({"gpu": 8}, "unknown key 'gpu'"),
    ],
)
def test_bad_platform_keys_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(PlatformError, match=message):
        platform_flags(settings)


def test_the_spec_keys_make_the_target_the_flags_submit() -> None:
    target = platform_target(EVERY_KEY)
    assert (target.cluster, target.gpus, target.gpu_type, target.nodes) == ("c1", 8, "a100_80gb", 1)
    assert (target.preemptible, target.build_data, target.max_retries) == (True, False, 2)
    assert target.env == {"WANDB_MODE": "offline", "LOG_LEVEL": "info"}
    assert (target.wandb, target.mlflow, target.image, target.priority) == (
        "limit/acme",
        "limit-exp",
        "mosaicml/llm-foundry:custom",
        "low",
    )


SPEC = """\
name: s
base_model: mpt-30b
runs:
  mix:
    config: {root}/yamls/mpt30b_mix.yaml
train:
  target: platform
  platform: {platform}
  overrides: [{overrides}]
generate:
  prompt_sets:
    instruct_v3_test: {root}/limit_foundry/assets/samples/instruct_v3/test_prompts.txt
judge:
  backend: openai
"""


def _spec(tmp_path: Path, platform: str, overrides: str = BUCKET) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(root=REPO_ROOT, platform=platform, overrides=overrides))
    return path


def test_a_spec_with_a_bad_platform_key_names_its_line(tmp_path: Path) -> None:
    from limit_foundry.study.spec import load_spec

    with pytest.raises(
        ConfigError, match=rf"{tmp_path}/spec.yaml:8: train.platform: preemptible must be bool"
    ):
        load_spec(_spec(tmp_path, "{cluster: c1, gpus: 8, preemptible: 'yes'}"))
    with pytest.raises(ConfigError, match="needs platform.cluster and platform.gpus"):
        load_spec(_spec(tmp_path, "{cluster: c1}"))
    spec = load_spec(_spec(tmp_path, "{cluster: c1, gpus: 8, preemptible: true, project_dir: proj}"))
    assert spec.platform["preemptible"] is True and spec.platform["project_dir"] == str(tmp_path / "proj")


def test_the_study_refuses_a_platform_run_that_would_fail_before_any_stage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from limit_foundry.study.runner import execute_stages
    from limit_foundry.study.spec import load_spec

    monkeypatch.setattr("limit_foundry.study.runner.platform_credentials_present", lambda: True)
    out = tmp_path / "out"
    spec = load_spec(_spec(tmp_path, "{cluster: c1, gpus: 16}"))
    with pytest.raises(ConfigError) as err:
        execute_stages(spec, out, ("train",), dry_run=True)
    assert f"{tmp_path}/spec.yaml:4: runs.mix: global_train_batch_size 72 does not divide by 16 GPUs" in str(
        err.value
    )
    spec = load_spec(_spec(tmp_path, "{cluster: c1, gpus: 8, preemptible: true}"))
    with pytest.raises(ConfigError, match="--preemptible lets the platform restart the run"):
        execute_stages(spec, out, ("train",), dry_run=True)
    spec = load_spec(_spec(tmp_path, "{cluster: c1, gpus: 8}", overrides=""))
    with pytest.raises(ConfigError, match="lost when the run ends"):
        execute_stages(spec, out, ("train",), dry_run=True)

    spec = load_spec(_spec(tmp_path, "{cluster: c1, gpus: 8, preemptible: true}"))
    spec.train_overrides += ["save_weights_only=false", "autoresume=true"]
    execute_stages(spec, out, ("train",), dry_run=True)
    printed = capsys.readouterr().out
    assert "pre-flight: limit-mpt30b-mix on 8 GPUs" in printed
    assert "2,000 rows" in printed and "270 steps in 10 epochs" in printed
    assert "--preemptible" in printed and not out.exists()


def test_a_packed_config_counts_packed_steps(tmp_path: Path) -> None:
    dataset = tmp_path / "data" / "paper_instruct_v1_5k_lima"  # the paper configs train on the released data
    dataset.mkdir(parents=True)
    manifest = {
        "splits": {"train": {"rows": 6_000}},
        "tokenizer": {"stats": {"train": {"total_tokens": {"mean": 400}}}},
    }
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    packed = paper(
        "mpt7b_mix.yaml", "train_loader.dataset.packing_ratio=fit", "model.attn_uses_sequence_id=true"
    )
    arithmetic = run_arithmetic(packed, gpus=8, data_root=tmp_path / "data")
    assert arithmetic.packing_ratio == pytest.approx(4.9)  # 0.97 * 2048 / 400, one decimal
    assert arithmetic.steps_per_epoch(arithmetic.packing_ratio) == int(6_000 // (48 * 4.9))
    assert "packed: 4.9 samples per row" in "\n".join(arithmetic.lines())
    unknown = run_arithmetic(
        paper(
            "mpt7b_mix.yaml", "train_loader.dataset.packing_ratio=auto", "model.attn_uses_sequence_id=true"
        ),
        gpus=8,
    )
    assert "packing_ratio auto is set at start-up; steps counted unpacked" in "\n".join(unknown.lines())
