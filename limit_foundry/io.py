"""Crash-safe file I/O shared by every stage.

Two rules keep a killed run from corrupting results: whole files are written to a temporary
sibling and renamed into place (atomic on POSIX), and logs of paid work are append-only JSONL,
flushed per record, whose torn last line (a kill mid-write) is ignored on read and counted.
What lands in place gets the modes the user's umask gives any new file (results are meant to be
shared with collaborators), although the temporary files behind it are created private.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from limit_foundry.errors import ConfigError

log = logging.getLogger(__name__)
TMP_DIR_INFIX = ".tmp-"  # `.<name>.tmp-XXXX`: a directory being built by atomic_directory


def current_umask() -> int:
    """The process umask, read from /proc where Linux reports it: setting it to read it back races with threads."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())  # mkstemp creates 0600
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (closed afterwards), without the library-version metadata, so the same
    numbers always give the same bytes."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def _flock(directory: Path, blocking: bool) -> Iterator[bool]:
    """An exclusive flock on a directory while the block runs: True when held, False when another
    process holds it or the filesystem cannot lock directories (then nobody may assume it is free)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)  # closing releases the lock


def remove_stale_tmp_dirs(path: str | os.PathLike) -> list[Path]:
    """Remove the `.<name>.tmp-*` siblings of `path` that no living process is building.

    atomic_directory keeps an flock on its temporary directory for as long as it builds; the kernel drops
    it when the process ends, even by kill -9. A directory whose lock can be taken is therefore abandoned;
    one whose lock is held, or cannot be tried (a filesystem without flock), is left alone. Call it with
    the parent's lock held (as atomic_directory does), so no directory is seen between its creation and
    its locking.
    """
    path = Path(path)
    removed = []
    for candidate in sorted(path.parent.glob(f".{path.name}{TMP_DIR_INFIX}*")):
        if not candidate.is_dir() or candidate.is_symlink():
            continue
        with _flock(candidate, blocking=False) as abandoned:
            if abandoned:
                shutil.rmtree(candidate, ignore_errors=True)
                removed.append(candidate)
    for candidate in removed:
        log.warning("removed %s, left behind by an interrupted build of %s", candidate, path)
    return removed


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that becomes `path` only if the block finishes.

    A build killed half-way leaves a hidden `.<name>.tmp-*` sibling, never a directory at `path` that
    looks complete; the next build of the same path removes such leftovers (remove_stale_tmp_dirs).
    The finished directory gets the umask's usual mode (the temporary one is created 0700).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        with _flock(path.parent, blocking=True) as parent_locked:
            if parent_locked:
                remove_stale_tmp_dirs(path)
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{TMP_DIR_INFIX}", dir=path.parent))
            held.enter_context(_flock(tmp, blocking=True))  # released when this build ends, however
        try:
            yield tmp
            tmp.chmod(0o777 & ~current_umask())
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


class JsonlAppender:
    """Append-only JSONL log: one record per line, flushed (and fsynced) as it is written."""

    def __init__(self, path: str | os.PathLike, fsync: bool = True):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._repair_torn_tail()
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close/__exit__)

    def _repair_torn_tail(self) -> None:
        """Cut a partial last line left by a kill, so the next record starts on its own line."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            f.truncate(data.rfind(b"\n") + 1)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        self._file.flush()
        if self._fsync:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class JsonlReadResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    torn_tail: bool = False  # the last line was cut off by a kill and ignored


def read_jsonl_log(path: str | os.PathLike) -> JsonlReadResult:
    """Read an append-only log written by JsonlAppender.

    Only the last line may be torn (ignored and flagged); a bad line anywhere else is corruption
    and raises with the line number.
    """
    result = JsonlReadResult()
    path = Path(path)
    if not path.exists():
        return result
    lines = path.read_bytes().split(b"\n")
    last = len(lines) - 1
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            result.records.append(json.loads(raw))
        except json.JSONDecodeError as err:
            if number - 1 == last:
                result.torn_tail = True
                continue
            raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from err
    return result


def decode_line(raw: bytes, number: int) -> str:
    """One line of a user's UTF-8 text file; a byte-order mark on line 1 (as some editors write) is dropped.

    Raises UnicodeDecodeError for bytes that are not UTF-8; callers name the file and line.
    """
    return raw.decode("utf-8-sig" if number == 1 else "utf-8")


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object) for a user-supplied JSONL file; blank lines skipped.

    A UTF-8 byte order mark (as some editors write) is skipped. A line that is not UTF-8 or not JSON
    raises ValueError naming the file and line.
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = decode_line(raw, number)
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{number}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
                ) from err
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from err


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> str:
    """One hash over several files (or every file under directories), names included."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p])
    digest = hashlib.sha256()
    for f in sorted(files):
        name = str(f.relative_to(root)) if root is not None else f.name
        digest.update(name.encode() + b"\0" + sha256_file(f).encode() + b"\n")
    return digest.hexdigest()


def stable_json_hash(obj: Any) -> str:
    """Hash of a JSON-serialisable object that does not depend on key order."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode())


def check_writable_dir(path: str | os.PathLike, option: str) -> None:
    """Refuse, before any work, an output folder that is a file, lies under a file, or cannot be written.

    Creates nothing: the nearest existing folder on the way must be writable, so the command can make the
    rest. Raises ConfigError naming the option and the path.
    """
    path = Path(path).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if existing == path and not path.is_dir():
        raise ConfigError(f"{option}: {path} is a file, not a folder")
    if not existing.is_dir():
        raise ConfigError(f"{option}: cannot make the folder {path}: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{option}: cannot write in {existing} (permission denied or a read-only file system)"
        )
