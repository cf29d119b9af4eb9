"""Study specs: the shipped ones validate; bad ones are rejected by --dry-run naming the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from limit_foundry.study.__main__ import main
from limit_foundry.study.spec import SpecError, load_spec

REPO_ROOT = Path(__file__).resolve().parents[2]

GOOD = """\
name: t
base_model: tiny-mpt
data:
  source_paths:
    lima: limit_foundry/assets/samples/lima
    instruct_v1: limit_foundry/assets/samples/instruct_v1
runs:
  lima:
    config: yamls/tiny/lima.yaml
  instruct:
    config: yamls/tiny/instruct.yaml
gauntlet:
  version: v0
generate:
  prompt_sets:
    lima_test: limit_foundry/assets/samples/lima/test.jsonl
judge:
  backend: hf
  hf_model: some/judge
  comparisons:
  - [lima, instruct]
"""


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO_ROOT)  # spec paths are relative to the repository root


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["demo.yaml", "limit_7b.yaml", "limit_30b.yaml"])
def test_shipped_specs_load(name: str) -> None:
    spec = load_spec(REPO_ROOT / "yamls" / "studies" / name)
    assert spec.comparisons and all(a in spec.runs and b in spec.runs for a, b in spec.comparisons)


def test_paper_specs_train_the_four_runs_per_size() -> None:
    for name, size in (("limit_7b.yaml", "mpt7b"), ("limit_30b.yaml", "mpt30b")):
        spec = load_spec(REPO_ROOT / "yamls" / "studies" / name)
        assert sorted(Path(r.config).name for r in spec.runs.values()) == sorted(
            f"{size}_{run}.yaml" for run in ("instruct", "instruct_subset", "lima", "mix")
        )
        assert all(a == "lima" for a, _ in spec.comparisons)  # LIMIT_FACTS §3: LIMA-only vs each other run


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("base_model: tiny-mpt", "base_model: gpt-17", 2, "base_model: unknown value 'gpt-17'"),
        (
            "    config: yamls/tiny/lima.yaml",
            "    config: yamls/tiny/lima.yaml\n    recipe: dolly:all",
            10,
            "unknown recipe 'dolly:all'",
        ),
        ("  version: v0", "  version: v9", 13, "unknown Gauntlet version 'v9'"),
        ("  backend: hf", "  backend: claude", 18, "judge.backend: unknown value 'claude'"),
        (
            "  - [lima, instruct]",
            "  - [lima, instruct]\n  - [lima, mix]",
            22,
            "['mix'] not trained by this study",
        ),
        ("    config: yamls/tiny/lima.yaml", "    config: yamls/tiny/nope.yaml", 9, "config file not found"),
        ("gauntlet:", "gauntlet:\n  limt: 3", 13, "gauntlet.limt: unknown key"),
    ],
)
def test_bad_spec_rejected_with_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, line: int, message: str
) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    assert main(["run", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{path}:{line}:" in err and message in err
    assert not (tmp_path / "out").exists()  # nothing started


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("  version: v0", "  version: [v0"))
    with pytest.raises(SpecError, match=rf"{path}:1[34]: not valid YAML"):
        load_spec(path)


def test_missing_openai_key_rejected_before_any_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = write(tmp_path, GOOD.replace("  backend: hf", "  backend: openai"))
    assert main(["run", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 2
    assert f"{path}:18: judge.backend openai needs OPENAI_API_KEY" in capsys.readouterr().err
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-real")
    assert main(["run", str(path), "--dry-run", "--out", str(tmp_path / "out")]) == 0
    assert "sk-test-not-real" not in capsys.readouterr().out


def test_missing_hf_token_for_gated_lima_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = write(tmp_path, GOOD.replace("    lima: limit_foundry/assets/samples/lima\n", ""))
    assert main(["run", str(path), "--dry-run"]) == 2
    assert f"{path}:7: runs.lima: recipe 'lima:all' reads gated GAIR/lima" in capsys.readouterr().err


def test_missing_platform_key_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MOSAICML_API_KEY", raising=False)
    monkeypatch.setattr("limit_foundry.platform.platform_credentials_present", lambda: False)
    text = GOOD.replace("runs:", "train:\n  target: platform\n  platform: {cluster: c1, gpus: 8}\nruns:")
    path = write(tmp_path, text)
    assert main(["run", str(path), "--dry-run"]) == 2
    assert f"{path}:8: train.target platform needs MOSAICML_API_KEY" in capsys.readouterr().err


def test_dry_run_prints_every_stage_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD)
    out = tmp_path / "out"
    assert main(["run", str(path), "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for expected in (
        "data_prep/build_datasets.py --out",
        "train.py yamls/tiny/lima.yaml",
        f"variables.save_root={out}/train",
        "limit_foundry.eval.gauntlet run --model",
        f"lima={out}/models/lima,instruct={out}/models/instruct",
        f"limit_foundry.generate --model {out}/models/instruct",
        f"limit_foundry.judge run --a {out}/generate/lima/lima_test.json",
        f"limit_foundry.report {out}",
    ):
        assert expected in printed
    assert not out.exists()


def test_only_limits_the_stages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD)
    assert main(["run", str(path), "--dry-run", "--only", "judge"]) == 0
    printed = capsys.readouterr().out
    assert "[judge]" in printed and "[train]" not in printed and "[data]" not in printed
