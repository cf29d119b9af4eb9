"""The eight paper configs: LIMIT's hyperparameters exactly, accepted by LLM Foundry's validation."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from limit_foundry.cli.config import main
from limit_foundry.config import ConfigError, compose_config, resolved_dict, validate_config
from limit_foundry.models.validation import check_model_keys, check_model_section

REPO = Path(__file__).resolve().parent.parent
PAPER_RUNS = {
    # run file: (model size, recipe): the eight finetuning runs of Jha et al. 2023 (LIMIT), on the data the
    # paper released by default (variables.data=rebuilt: tests/data/test_paper_data.py)
    "mpt7b_lima": ("7b", "paper_lima"),
    "mpt7b_instruct": ("7b", "instruct_v1"),
    "mpt7b_instruct_subset": ("7b", "paper_instruct_v1_5k"),
    "mpt7b_mix": ("7b", "paper_instruct_v1_5k_lima"),
    "mpt30b_lima": ("30b", "paper_lima"),
    "mpt30b_instruct": ("30b", "instruct_v3"),
    "mpt30b_instruct_subset": ("30b", "paper_instruct_v3_1k"),
    "mpt30b_mix": ("30b", "paper_instruct_v3_1k_lima"),
}
# The paper's hyperparameters (Jha et al. 2023, per model size), written out independently of the YAMLs.
PAPER_TABLE = {
    "7b": {
        "base": "mosaicml/mpt-7b",
        "max_seq_len": 2048,
        "optimizer": {
            "name": "decoupled_adamw",
            "lr": 5e-6,
            "betas": [0.9, 0.99],
            "eps": 1e-8,
            "weight_decay": 0,
        },
        "global_train_batch_size": 48,
        "device_train_microbatch_size": 4,
        "init_device": "cpu",
    },
    "30b": {
        "base": "mosaicml/mpt-30b",
        "max_seq_len": 8192,
        "optimizer": {"name": "decoupled_lionw", "lr": 1e-6, "betas": [0.9, 0.95], "weight_decay": 0},
        "global_train_batch_size": 72,
        "device_train_microbatch_size": 1,
        "init_device": "mixed",
    },
}


@pytest.mark.parametrize("run", sorted(PAPER_RUNS))
def test_paper_config_matches_the_paper_table(run: str) -> None:
    size, recipe = PAPER_RUNS[run]
    expected = PAPER_TABLE[size]
    cfg = resolved_dict(compose_config(REPO / "yamls" / f"{run}.yaml"))
    assert cfg["model"]["name"] == "limit_hf_mpt"
    assert cfg["model"]["pretrained_model_name_or_path"] == expected["base"]
    assert cfg["model"]["init_device"] == expected["init_device"]
    assert cfg["max_seq_len"] == expected["max_seq_len"]
    assert cfg["train_loader"]["dataset"]["max_seq_len"] == expected["max_seq_len"]
    assert cfg["optimizer"] == expected["optimizer"]
    assert cfg["global_train_batch_size"] == expected["global_train_batch_size"]
    assert cfg["device_train_microbatch_size"] == expected["device_train_microbatch_size"]
    assert cfg["scheduler"] == {"name": "linear_decay_with_warmup", "t_warmup": "50ba", "alpha_f": 0}
    assert cfg["algorithms"]["gradient_clipping"] == {"clipping_type": "norm", "clipping_threshold": 1.0}
    assert cfg["max_duration"] == "10ep"
    assert cfg["precision"] == "amp_bf16"
    assert cfg["seed"] == 17
    fsdp = cfg["fsdp_config"]
    assert fsdp["sharding_strategy"] == "FULL_SHARD"
    assert fsdp["mixed_precision"] == "PURE"
    assert fsdp["activation_checkpointing"] is True
    assert fsdp["activation_checkpointing_reentrant"] is False
    assert fsdp["limit_all_gathers"] is True
    assert cfg["save_interval"] == "2ep"
    assert cfg["callbacks"]["hf_checkpointer"]["save_interval"] == "2ep"
    assert cfg.get("save_weights_only", False) is (size == "30b")
    dataset = cfg["train_loader"]["dataset"]
    assert dataset["recipe"] == recipe
    assert dataset["decoder_only_format"] is True
    assert dataset["shuffle"] is True
    assert dataset["allow_pad_trimming"] is False
    assert dataset["packing_ratio"] is None
    assert cfg["tokenizer"]["kwargs"]["padding_side"] == "right"


def test_run_files_differ_only_in_data() -> None:
    """Within a model size, the composed configs differ only in run name and data recipe."""
    for size in ("7b", "30b"):
        runs = [r for r, (s, _) in PAPER_RUNS.items() if s == size]
        configs = [resolved_dict(compose_config(REPO / "yamls" / f"{r}.yaml")) for r in runs]

        def strip(cfg: dict) -> dict:
            cfg = {k: v for k, v in cfg.items() if k not in ("run_name", "variables", "save_folder")}
            cfg["train_loader"]["dataset"].pop("recipe")
            cfg["callbacks"]["hf_checkpointer"].pop("save_folder")
            return cfg

        first = strip(configs[0])
        for other in configs[1:]:
            assert strip(other) == first


@pytest.mark.parametrize("run", sorted(PAPER_RUNS))
def test_paper_config_passes_llm_foundry_validation(run: str, tiny_hub_mpt_dir: Path) -> None:
    """LLM Foundry's own dataclass validation, then the model section built through the registry."""
    from llmfoundry.utils.builders import build_composer_model

    from limit_foundry.models.tiny import load_tiny_tokenizer

    cfg = compose_config(
        REPO / "yamls" / f"{run}.yaml",
        [f"model.pretrained_model_name_or_path={tiny_hub_mpt_dir}", "model.init_device=cpu"],
    )
    resolved = validate_config(cfg)
    model_cfg = dict(resolved["model"])
    model = build_composer_model(model_cfg.pop("name"), model_cfg, load_tiny_tokenizer())
    assert model.model.config.attn_config["attn_impl"] == "torch"


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"inherit: {REPO / 'yamls' / 'mpt7b_lima.yaml'}\nlearning_rate_typo: 3\n")
    with pytest.raises(ConfigError, match="learning_rate_typo"):
        validate_config(compose_config(bad))


def test_missing_model_directory_is_named(tmp_path: Path) -> None:
    resolved = resolved_dict(
        compose_config(
            REPO / "yamls" / "mpt7b_lima.yaml", [f"model.pretrained_model_name_or_path={tmp_path}"]
        )
    )
    with pytest.raises(ConfigError, match="not an MPT checkpoint directory"):
        check_model_section(resolved["model"])
    resolved["model"]["pretrained_model_name_or_path"] = str(tmp_path / "absent")
    with pytest.raises(ConfigError, match="absent: the checkpoint directory does not exist"):
        check_model_section(resolved["model"])


@pytest.mark.parametrize(
    ("run", "override", "named", "suggested"),
    [
        ("tiny/mix", "model.n_layrs=3", "model.n_layrs", "n_layers"),
        (
            "tiny/mix",
            "model.attn_config.alibi_bias_mx=8",
            "model.attn_config.alibi_bias_mx",
            "alibi_bias_max",
        ),
        ("mpt7b_lima", "model.attn_imp=torch", "model.attn_imp", "attn_impl"),
        ("mpt7b_lima", "model.config_overrides.n_layrs=3", "model.config_overrides.n_layrs", "n_layers"),
        (
            "demo/lima",
            "model.use_flash_attention=false",
            "model.use_flash_attention",
            "use_flash_attention_2",
        ),
    ],
)
def test_a_typo_in_a_model_key_is_named_with_the_closest_key(
    run: str, override: str, named: str, suggested: str
) -> None:
    resolved = resolved_dict(
        compose_config(REPO / "yamls" / f"{run}.yaml", [override, "variables.base_model=m"])
    )
    with pytest.raises(ConfigError, match=rf"^{named}: not a setting of model .*did you mean '{suggested}'"):
        check_model_keys(resolved["model"])


def test_every_shipped_config_uses_known_model_keys() -> None:
    for path in sorted(REPO.glob("yamls/*.yaml")) + sorted(REPO.glob("yamls/[bdt]*/*.yaml")):
        cfg = compose_config(path)
        if "model" in cfg:  # the keys matter, not the values: interpolations stay unresolved
            check_model_keys(OmegaConf.to_container(cfg["model"]))


def test_a_wrong_typed_value_names_its_key() -> None:
    cfg = compose_config(REPO / "yamls" / "tiny" / "mix.yaml", ["global_train_batch_size=eight"])
    with pytest.raises(ConfigError, match=r"^global_train_batch_size: expected int or null, got str 'eight'"):
        validate_config(cfg)


def test_yaml_syntax_errors_and_empty_files_are_named_with_the_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  name: mpt_causal_lm\n  d_model: [64\nseed: 17\n")
    with pytest.raises(ConfigError, match=rf"^{broken}:4:\d+: not valid YAML"):
        compose_config(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=rf"^{empty}: the file holds no settings"):
        compose_config(empty)


def test_inheritance_cycle_and_missing_parent(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("inherit: b.yaml\nx: 1\n")
    (tmp_path / "b.yaml").write_text("inherit: a.yaml\ny: 2\n")
    with pytest.raises(ConfigError, match="cycle"):
        compose_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("inherit: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml"):
        compose_config(tmp_path / "c.yaml")


def test_overrides_and_show_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(REPO / "yamls" / "mpt7b_mix.yaml"), "variables.data_root=/mnt/data"]) == 0
    out = capsys.readouterr().out
    assert "data_root: /mnt/data" in out
    assert "inherit" not in out
    assert "lr: 5.0e-06" in out
    assert main(["show", str(REPO / "yamls" / "base" / "limit_common.yaml")]) == 2
    assert "run_name" in capsys.readouterr().err
