"""Crash-safe writes: modes that follow the umask, user JSONL read with file:line errors, no stale leftovers."""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from limit_foundry.io import atomic_directory, atomic_write_json, atomic_write_text, iter_jsonl


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_get_the_umask_mode_not_0600(tmp_path: Path, umask_022: None) -> None:
    atomic_write_json(tmp_path / "results.json", {"a": 1})
    atomic_write_text(tmp_path / "report.md", "# report\n")
    assert mode(tmp_path / "results.json") == 0o644
    assert mode(tmp_path / "report.md") == 0o644
    os.umask(0o077)  # a private umask stays private
    atomic_write_text(tmp_path / "private.txt", "x")
    assert mode(tmp_path / "private.txt") == 0o600


def test_a_finished_directory_gets_the_umask_mode(tmp_path: Path, umask_022: None) -> None:
    with atomic_directory(tmp_path / "dataset") as tmp:
        atomic_write_json(tmp / "manifest.json", {})
    assert mode(tmp_path / "dataset") == 0o755
    assert mode(tmp_path / "dataset" / "manifest.json") == 0o644


def test_an_abandoned_build_directory_is_removed_by_the_next_build(tmp_path: Path) -> None:
    abandoned = tmp_path / ".dataset.tmp-abc123"  # what a build killed with -9 leaves: no lock held
    (abandoned / "shards").mkdir(parents=True)
    other = tmp_path / ".other.tmp-abc123"  # another output's build: not ours to judge
    other.mkdir()
    with atomic_directory(tmp_path / "dataset"):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-abc123", "dataset"]


def test_a_build_directory_another_process_holds_is_left_alone(tmp_path: Path) -> None:
    live = tmp_path / ".dataset.tmp-live"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)  # a lock on another open file description, as a second process holds it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with atomic_directory(tmp_path / "dataset"):
            pass
        assert live.is_dir()
    finally:
        os.close(fd)


def test_user_jsonl_accepts_a_bom_and_names_the_line_of_non_utf8_bytes(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_bytes(b'\xef\xbb\xbf{"q": 1}\n{"q": 2}\n')
    assert list(iter_jsonl(good)) == [(1, {"q": 1}), (2, {"q": 2})]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"q": 1}\n{"q": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not UTF-8 text"):
        list(iter_jsonl(bad))
