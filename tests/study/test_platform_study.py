"""A study with `train.target: platform` through the local platform, against moto's S3 server on 127.0.0.1.

The study submits a tiny training run (the very run YAML mcli would get, run detached on this machine), and is
killed with SIGKILL (its whole process group) while the run trains. The run keeps going; the rerun of the study
attaches to it by its content-derived name, waits for it, and links the run's HF export from object storage.
Nothing is submitted twice: one run folder, one `submitted`, one training.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

SPEC = """\
name: plat-e2e
base_model: tiny-mpt
runs:
  lima:
    config: {root}/yamls/tiny/lima.yaml
train:
  target: platform
  platform: {{cluster: local, gpus: 1, build_data: false, local: {local}, poll: 1}}
  # Two batches, and no Composer checkpoints (the object-store round trip of those is tests/test_remote_e2e.py):
  # the HF export in object storage is what the study reads.
  overrides: [max_duration=2ba, save_folder=null, autoresume=false, "variables.save_root={save_root}",
              "variables.data_root={data}"]
generate:
  prompt_sets:
    lima_test: {root}/limit_foundry/assets/samples/lima/test.jsonl
judge:
  backend: openai
"""


def _study(spec: Path, out: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "limit_foundry.cli",
            "study",
            "run",
            str(spec),
            "--out",
            str(out),
            "--only",
            "train",
        ],
        cwd=REPO_ROOT,  # the local platform runs in this checkout; yamls/tiny paths are relative to it
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_platform_study_survives_a_kill_and_reattaches(s3_server: dict[str, str], tmp_path: Path) -> None:
    import boto3

    from limit_foundry.remote import cache_manifest
    from limit_foundry.study.platform_runs import LocalPlatform, RunState

    local_root, out = tmp_path / "platform", tmp_path / "study"
    save_root = f"s3://{s3_server['bucket']}/platform-study"
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC.format(root=REPO_ROOT, local=local_root, save_root=save_root, data=tmp_path / "data")
    )
    env = {**os.environ, "LIMIT_FOUNDRY_CACHE": str(tmp_path / "cache"), "TOKENIZERS_PARALLELISM": "false"}
    env.pop("MOSAICML_API_KEY", None)  # the local platform needs no platform credentials

    first, lines, name = _study(spec, out, env), [], None
    for line in first.stdout:  # kill the whole study (runner and its follow step) once the run trains
        lines.append(line)
        if line.startswith("submitted run "):
            name = line.split()[2]
        if name and line.startswith(f"run {name}: running"):
            os.killpg(first.pid, signal.SIGKILL)
            break
    first.wait(timeout=60)
    assert name and first.returncode == -signal.SIGKILL, "".join(lines)[-3000:]
    assert name.startswith("plat-e2e-lima-")
    platform = LocalPlatform(local_root, REPO_ROOT)
    assert platform.status(name).state is RunState.RUNNING, "the run outlives the killed study"

    started = time.monotonic()
    second = _study(spec, out, env)
    output, _ = second.communicate(timeout=900)
    assert second.returncode == 0, output[-5000:]
    print(f"rerun until the run finished: {time.monotonic() - started:.0f} s")
    assert "train:lima:submit: current, skipped" in output
    assert f"run {name}: already submitted (" in output  # running, or completed if it was quick
    assert "attached, not submitted again" in output
    assert f"run {name}: completed" in output

    # submitted once: one run folder, one submission, one training in its log
    assert [p.name for p in local_root.iterdir()] == [name]
    assert ("".join(lines) + output).count("submitted run ") == 1
    assert platform.status(name).state is RunState.COMPLETED
    assert (local_root / name / "exit_code").read_text().strip() == "0"
    assert platform.logs(name, tail=100_000).count("llmfoundry.command_utils.train: Done.") == 1
    s3 = boto3.client("s3", endpoint_url=s3_server["S3_ENDPOINT_URL"])
    listed = s3.list_objects_v2(Bucket=s3_server["bucket"], Prefix="platform-study/tiny-lima/hf/huggingface/")
    assert {o["Key"].split("/")[4] for o in listed.get("Contents", [])} == {"ba2"}, listed

    # the study's model link: the run's HF export, fetched from object storage
    model = out / "models" / "lima"
    assert (model / "config.json").is_file()
    assert cache_manifest(model.resolve())["uri"] == f"{save_root}/tiny-lima/hf/huggingface/ba2"
    steps = json.loads((out / "study_manifest.json").read_text())["steps"]
    assert {"train:lima:submit", "train:lima"} <= set(steps)
