"""`limit-foundry config {show,validate}` through the dispatcher, and `python -m limit_foundry.config`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from limit_foundry.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY_MIX = REPO / "yamls" / "tiny" / "mix.yaml"


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["config", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: limit-foundry config") and "show" in out and "validate" in out


def test_validate_a_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", str(TINY_MIX), f"variables.data_root={tmp_path}"]) == 0
    assert capsys.readouterr().out.strip() == f"{TINY_MIX}: valid"


def test_a_bad_config_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["config", "validate", str(TINY_MIX), f"variables.data_root={tmp_path}", "learning_rat=0.1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "learning_rat" in err
    assert main(["config", "show", str(tmp_path / "absent.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_a_missing_dataset_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [f"variables.data_root={tmp_path}", "train_loader.dataset.build_if_missing=false"]
    assert main(["config", "validate", str(TINY_MIX), *args]) == 2
    assert "no dataset at" in capsys.readouterr().err
    assert main(["config", "validate", "--no-path-checks", str(TINY_MIX), *args]) == 0


def test_python_m_limit_foundry_config_still_works() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "limit_foundry.config", "show", str(TINY_MIX), "variables.data_root=/mnt/d"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "data_root: /mnt/d" in result.stdout and "inherit" not in result.stdout


def test_a_truncated_checkpoint_is_named_by_config_validate(
    tmp_path: Path, tiny_hub_mpt_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    checkpoint = Path(shutil.copytree(tiny_hub_mpt_dir, tmp_path / "ckpt"))
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    args = [f"variables.data_root={tmp_path}", f"model.pretrained_model_name_or_path={checkpoint}"]
    assert main(["config", "validate", str(REPO / "yamls" / "mpt7b_lima.yaml"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"{weights}: unreadable safetensors file" in err


def test_a_model_key_typo_and_a_yaml_syntax_error_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [f"variables.data_root={tmp_path}", "model.n_layrs=3"]
    assert main(["config", "validate", "--no-path-checks", str(TINY_MIX), *args]) == 2
    assert (
        "model.n_layrs: not a setting of model 'mpt_causal_lm' (did you mean 'n_layers'?)"
        in capsys.readouterr().err
    )
    broken = tmp_path / "broken.yaml"
    broken.write_text("inherit: x.yaml\nmodel: {name: a\n")
    assert main(["config", "validate", str(broken)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {broken}:3:1: not valid YAML")
