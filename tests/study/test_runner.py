"""The runner's bookkeeping with real subprocess steps: skip current steps, redo stale ones, resume after a kill.

The steps here are small Python commands standing in for the stage CLIs (which the slow end-to-end test
runs for real), so the manifest logic is exercised in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from limit_foundry.errors import UserError
from limit_foundry.study.manifest import MANIFEST_NAME, StudyManifest
from limit_foundry.study.stages import export_dir, link_model

REPO_ROOT = Path(__file__).resolve().parents[2]

# A driver: three steps over two stages; every execution appends its key to ran.log.
DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from limit_foundry.study import runner
    from limit_foundry.study.stages import STAGE_BUILDERS, Step

    out = Path(sys.argv[1])
    source = out.parent / "source.txt"

    def writer(key, target, extra="", content_from=None):
        code = (
            "import sys, time, pathlib; p = pathlib.Path(sys.argv[1]);"
            "open(p.parent.parent.parent / 'ran.log', 'a').write(sys.argv[2] + '\\\\n');"
            + extra
            + "p.parent.mkdir(parents=True, exist_ok=True);"
            + "p.write_text(sys.argv[2] + (open(sys.argv[3]).read() if len(sys.argv) > 3 else ''))"
        )
        return [sys.executable, "-c", code, str(target), key] + ([str(content_from)] if content_from else [])

    wait = "import os\\nwhile not os.path.exists(str(p.parent.parent.parent / 'go')): time.sleep(0.1)\\n"
    STAGE_BUILDERS["data"] = lambda spec, layout: [
        Step("data", "data", writer("data", out / "data" / "d.txt", content_from=source), [source], [out / "data" / "d.txt"])
    ]
    STAGE_BUILDERS["train"] = lambda spec, layout: [
        Step("train", "train:a", writer("train:a", out / "train" / "a.txt"), [out / "data" / "d.txt"], [out / "train" / "a.txt"]),
        Step("train", "train:b", writer("train:b", out / "train" / "b.txt", wait), [out / "data" / "d.txt"], [out / "train" / "b.txt"]),
    ]
    from limit_foundry.study.spec import StudySpec

    spec = StudySpec(path=Path("spec.yaml"), name="t", base_model="tiny-mpt", runs={}, judge_backend="hf")
    runner.execute_stages(spec, out, ("data", "train"))
    """
)


def start(tmp_path: Path) -> subprocess.Popen:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.Popen(
        [sys.executable, str(driver), str(tmp_path / "out")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def ran(tmp_path: Path) -> list[str]:
    log = tmp_path / "ran.log"
    return log.read_text().split() if log.is_file() else []


def finish(tmp_path: Path) -> str:
    proc = start(tmp_path)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    return output


def test_complete_steps_are_skipped_and_stale_ones_redone(tmp_path: Path) -> None:
    (tmp_path / "source.txt").write_text("v1")
    (tmp_path / "go").write_text("")
    finish(tmp_path)
    assert ran(tmp_path) == ["data", "train:a", "train:b"]

    output = finish(tmp_path)  # nothing changed: nothing runs
    assert ran(tmp_path) == ["data", "train:a", "train:b"]
    assert output.count("current, skipped") == 3

    (tmp_path / "source.txt").write_text("v2")  # an input changed: everything downstream reruns
    finish(tmp_path)
    assert ran(tmp_path)[3:] == ["data", "train:a", "train:b"]

    (tmp_path / "out" / "train" / "a.txt").write_text("tampered")  # an output changed: only its step reruns
    finish(tmp_path)
    assert ran(tmp_path)[6:] == ["train:a"]
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert set(manifest["steps"]) == {"data", "train:a", "train:b"}
    train = manifest["stages"]["train"]
    assert (train["steps_run"], train["steps_skipped"]) == (1, 1)
    assert train["cpu_s"] == manifest["steps"]["train:a"]["cpu_s"] > 0  # the one step that ran


def test_killed_study_resumes_without_redoing_finished_steps(tmp_path: Path) -> None:
    (tmp_path / "source.txt").write_text("v1")
    proc = start(tmp_path)
    deadline = time.monotonic() + 120
    while "train:b" not in ran(tmp_path):  # train:b has started and waits for `go`
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "out" / "train" / "b.txt").exists()

    (tmp_path / "go").write_text("")
    output = finish(tmp_path)
    assert ran(tmp_path) == ["data", "train:a", "train:b", "train:b"]  # only the killed step again
    assert "data: current, skipped" in output and "train:a: current, skipped" in output


def test_hash_cache_follows_content(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "w.bin").write_bytes(b"1")
    (target / ".scratch").write_bytes(b"ignored")  # hidden scratch is not content
    manifest = StudyManifest(tmp_path / "out")
    first = manifest.content_hash(target)
    (target / ".scratch").write_bytes(b"changed")
    assert manifest.content_hash(target) == first
    (target / "w.bin").write_bytes(b"2")
    assert manifest.content_hash(target) != first
    assert manifest.content_hash(tmp_path / "absent") is None


def test_model_link_is_relative_and_replaceable(tmp_path: Path) -> None:
    first, second = tmp_path / "train" / "ba4", tmp_path / "train" / "ba8"
    first.mkdir(parents=True)
    second.mkdir()
    link = tmp_path / "models" / "lima"
    link_model(link, first)
    link_model(link, second)
    assert not os.path.isabs(os.readlink(link)) and link.resolve() == second.resolve()


def test_corrupt_manifest_is_reported(tmp_path: Path) -> None:
    (tmp_path / MANIFEST_NAME).write_text("{")
    with pytest.raises(UserError, match=f"{MANIFEST_NAME}: not valid JSON"):
        StudyManifest(tmp_path)


def test_export_named_by_epoch_or_latest(tmp_path: Path) -> None:
    root = tmp_path / "hf" / "huggingface"
    for name in ("ep2-ba40", "ep4-ba80", "ep10-ba200"):
        (root / name).mkdir(parents=True)
    assert export_dir(tmp_path / "hf", "ep4") == root / "ep4-ba80"
    assert export_dir(tmp_path / "hf", "latest") == root / "ep10-ba200"  # by number, not by name
    assert export_dir(tmp_path / "hf", "ep4-ba80") == root / "ep4-ba80"
    assert export_dir(tmp_path / "hf", "ep6") is None


def test_retry_failed_reaches_platform_steps_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from limit_foundry.study import runner
    from limit_foundry.study.spec import StudySpec
    from limit_foundry.study.stages import STAGE_BUILDERS, Step

    told: list[bool] = []

    def steps(spec, layout) -> list[Step]:
        argv = layout.out / "argv.json"
        code = "import json, sys; json.dump(sys.argv[2:], open(sys.argv[1], 'w'))"
        command = Step("train", "train:a", [sys.executable, "-c", code, str(argv), "a"], [], [argv])
        command.retry_flag = "--retry-failed"
        action = Step("train", "train:b", ["platform-job"], [], [], action=told.append)
        return [command, action]

    monkeypatch.setitem(STAGE_BUILDERS, "train", steps)
    spec = StudySpec(path=Path("spec.yaml"), name="t", base_model="tiny-mpt", runs={}, judge_backend="hf")
    runner.execute_stages(spec, tmp_path / "plain", ("train",))
    runner.execute_stages(spec, tmp_path / "retry", ("train",), retry_failed=True)
    assert json.loads((tmp_path / "plain" / "argv.json").read_text()) == ["a"]
    assert json.loads((tmp_path / "retry" / "argv.json").read_text()) == ["a", "--retry-failed"]
    assert told == [False, True]
