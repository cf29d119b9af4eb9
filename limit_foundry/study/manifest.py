"""The study manifest: which steps finished, from which inputs, producing which outputs (content hashes).

A step is skipped when its recorded fingerprint (command + input hashes) equals the current one and its
outputs still hash to what was recorded, so an interrupted study resumes where it stopped and an edited
config or retrained model reruns exactly the steps downstream of it. Hashing a model directory costs
seconds, so hashes are cached per path under a signature of (file, size, mtime): a touched file is
hashed again, an untouched one is not. The file is rewritten atomically after every step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from limit_foundry.errors import UserError
from limit_foundry.io import atomic_write_json, sha256_file, sha256_tree, stable_json_hash

MANIFEST_NAME = "study_manifest.json"
FORMAT = "limit_foundry.study/1"


def _visible_files(directory: Path) -> list[Path]:
    """Files under a directory, leaving out hidden scratch (`.work`, `.<name>.tmp-*` of atomic writes)."""
    return sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    )


def _signature(path: Path) -> str:
    files = _visible_files(path) if path.is_dir() else [path]
    stats = [
        (str(f.relative_to(path)) if path.is_dir() else f.name, f.stat().st_size, f.stat().st_mtime_ns)
        for f in files
    ]
    return stable_json_hash(stats)


class StudyManifest:
    """OUT/study_manifest.json: per step, its command, input and output hashes and wall time."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / MANIFEST_NAME
        self.data: dict[str, Any] = {"format": FORMAT, "steps": {}, "stages": {}, "hash_cache": {}}
        if self.path.is_file():
            try:
                loaded = json.loads(self.path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as err:
                raise UserError(f"{self.path}: not valid JSON ({err.msg}); delete it to start over") from err
            if loaded.get("format") != FORMAT:
                raise UserError(f"{self.path}: format {loaded.get('format')!r}, expected {FORMAT}")
            self.data.update(loaded)

    def content_hash(self, path: Path) -> str | None:
        """sha256 of a file or a directory's visible files; None when the path does not exist."""
        path = path.resolve()
        if not path.exists():
            return None
        signature = _signature(path)
        cached = self.data["hash_cache"].get(str(path))
        if cached and cached["signature"] == signature:
            return cached["sha256"]
        digest = sha256_tree(_visible_files(path), root=path) if path.is_dir() else sha256_file(path)
        self.data["hash_cache"][str(path)] = {"signature": signature, "sha256": digest}
        return digest

    def hashes(self, paths: list[Path]) -> dict[str, str | None]:
        return {str(p): self.content_hash(p) for p in paths}

    def fingerprint(self, command: list[str], inputs: list[Path]) -> str:
        return stable_json_hash({"command": command, "inputs": self.hashes(inputs)})

    def step(self, key: str) -> dict[str, Any] | None:
        return self.data["steps"].get(key)

    def is_current(self, key: str, fingerprint: str, outputs: list[Path]) -> bool:
        entry = self.step(key)
        if not entry or entry.get("fingerprint") != fingerprint or entry.get("partial"):
            return False
        current = self.hashes(outputs)
        return all(current[k] is not None for k in current) and current == entry.get("outputs")

    def record_step(
        self,
        key: str,
        stage: str,
        command: list[str],
        fingerprint: str,
        outputs: list[Path],
        wall_s: float,
        cpu_s: float,
        partial: bool = False,
    ) -> None:
        """Record a finished step; a partial one (some items failed) is rerun by the next study run."""
        self.data["steps"][key] = {
            "stage": stage,
            "command": command,
            "fingerprint": fingerprint,
            "outputs": self.hashes(outputs),
            "partial": partial,
            "wall_s": round(wall_s, 2),
            "cpu_s": round(cpu_s, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self.save()

    def record_stage(self, stage: str, wall_s: float, cpu_s: float, ran: int, skipped: int) -> None:
        self.data["stages"][stage] = {
            "wall_s": round(wall_s, 2),
            "cpu_s": round(cpu_s, 2),
            "steps_run": ran,
            "steps_skipped": skipped,
        }
        self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, self.data)
