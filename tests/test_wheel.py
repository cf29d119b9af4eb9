"""The built wheel is self-contained: it holds every data file the package reads, and its commands work from a
directory that is not the repository, with the wheel's copy of limit_foundry ahead of the editable install.
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.xdist_group("wheel")  # one worker builds the session's `built_wheel` for all


@pytest.fixture(scope="module")
def wheel(built_wheel: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The session's wheel, and a working directory that is not the repository."""
    return {**built_wheel, "workdir": tmp_path_factory.mktemp("wheel_user") / "elsewhere"}


def _console_script(site: Path, name: str) -> tuple[str, str]:
    """(module, function) of a console script the wheel declares."""
    (entry_points,) = site.glob("limit_foundry-*.dist-info/entry_points.txt")
    parser = configparser.ConfigParser()
    parser.read(entry_points)
    module, _, function = parser["console_scripts"][name].partition(":")
    return module.strip(), function.strip()


def _limit_foundry(wheel: dict, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`limit-foundry ARGS...` as the installed console script runs it, with the wheel first on sys.path."""
    module, function = _console_script(wheel["site"], "limit-foundry")
    code = (
        "import sys, limit_foundry\n"
        f"assert limit_foundry.__file__.startswith({str(wheel['site'])!r}), limit_foundry.__file__\n"
        f"from {module} import {function}\n"
        f"sys.exit({function}())\n"
    )
    workdir = wheel["workdir"]
    workdir.mkdir(exist_ok=True)
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": str(wheel["site"])}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=workdir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_wheel_holds_every_package_data_file(wheel: dict) -> None:
    """Every file under limit_foundry/ that is not Python source (Gauntlet YAMLs, data pin, judge templates,
    pricing, tokenizer and sample assets) ships in the wheel."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "limit_foundry"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    data_files = sorted(
        name for name in tracked if name and not name.endswith(".py") and (REPO_ROOT / name).is_file()
    )
    assert any(name.startswith("limit_foundry/judge/templates/") for name in data_files)
    assert "limit_foundry/judge/pricing.yaml" in data_files
    assert any(name.startswith("limit_foundry/assets/samples/icl/") for name in data_files)
    missing = [name for name in data_files if name not in wheel["names"]]
    assert not missing, f"package data left out of the wheel (pyproject.toml package-data): {missing}"
    gauntlet_configs = [n for n in wheel["names"] if n.startswith("limit_foundry/") and "gauntlet_v0" in n]
    assert gauntlet_configs, "the Gauntlet v0 config is not package data"


@pytest.mark.slow
def test_wheel_declares_the_console_script(wheel: dict) -> None:
    assert _console_script(wheel["site"], "limit-foundry") == ("limit_foundry.cli", "main")
    done = _limit_foundry(wheel, "--help")
    assert done.returncode == 0, done.stderr
    assert "study" in done.stdout and "gauntlet" in done.stdout


@pytest.mark.slow
def test_gauntlet_score_v0_from_another_directory(wheel: dict) -> None:
    raw = wheel["workdir"] / "lima" / "RAW.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({"metrics/copa/0-shot/InContextLearningMultipleChoiceAccuracy": 0.75}))
    done = _limit_foundry(wheel, "gauntlet", "score", "--config", "v0", "--metrics", str(raw))
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["gauntlet"]["version"] == "v0"
    assert printed["models"][0]["model_id"] == "lima"


STAGES = """\
gauntlet:
  version: v0
generate:
  prompt_sets:
    lima_test: prompts.jsonl
judge:
  backend: hf
  hf_model: some/judge
  comparisons:
  - [lima, instruct]
"""


@pytest.mark.slow
def test_study_dry_run_from_another_directory(wheel: dict, tmp_path: Path, tiny_study_spec) -> None:
    spec_dir = tmp_path / "my-study"
    spec_dir.mkdir()
    (spec_dir / "prompts.jsonl").write_text(
        '{"conversations": ["Name a colour."], "source": "test"}\n'
    )  # LIMA's layout
    spec = spec_dir / "spec.yaml"
    spec.write_text(tiny_study_spec("wheel-check", STAGES))
    gauntlet_data = tmp_path / "gauntlet_data"
    gauntlet_data.mkdir()  # a dry run reads no benchmark file
    done = _limit_foundry(
        wheel, "study", "run", str(spec), "--dry-run", env={"GAUNTLET_DATA_DIR": str(gauntlet_data)}
    )
    assert done.returncode == 0, done.stderr
    assert f"--prompts-path {spec_dir}/prompts.jsonl" in done.stdout  # relative to the spec file
    assert "-m limit_foundry.cli data --out runs/wheel-check/data" in done.stdout
    assert "-m limit_foundry.cli.train" in done.stdout
    assert not (wheel["workdir"] / "runs").exists()
