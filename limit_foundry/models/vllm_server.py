"""A vLLM OpenAI-compatible server as a child process: started on 127.0.0.1 with a free port, healthy before use,
and gone afterwards, on exit, Ctrl-C, error, or a kill of its parent.

vLLM pins its own torch and transformers (they conflict with LLM Foundry 0.22's), so it runs from its own
environment (`make vllm` creates `.venv-vllm`), found by `--vllm-python`, `$LIMIT_FOUNDRY_VLLM_PYTHON`, or a
`.venv-vllm` in the working directory or beside the installed package. The server runs in a process group of
its own under a small watchdog, and the group is killed as one: on stop, when vLLM exits, or when this process
dies without cleaning up (SIGKILL included).
Its output goes to a log file, whose tail is quoted when it fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from limit_foundry.errors import ServiceUnreachableError, UserError

PYTHON_ENV = "LIMIT_FOUNDRY_VLLM_PYTHON"
VENV_NAME = ".venv-vllm"
LOG_TAIL_LINES = 25


def find_vllm_python(explicit: str | os.PathLike | None = None) -> Path:
    """The interpreter of the vLLM environment: `explicit`, the environment variable, or a `.venv-vllm`."""
    chosen = explicit or os.environ.get(PYTHON_ENV)
    if chosen:
        path = Path(chosen)
        if not path.is_file():
            source = "--vllm-python" if explicit else f"${PYTHON_ENV}"
            raise UserError(f"{source}: {path} is not a Python interpreter")
        return path
    places = [Path.cwd() / VENV_NAME, Path(__file__).resolve().parents[2] / VENV_NAME]
    for venv in places:
        if (venv / "bin" / "python").is_file():
            return venv / "bin" / "python"
    looked = ", ".join(str(p) for p in places)
    raise UserError(
        f"no vLLM environment found (looked for {looked}): run `make vllm`, or pass --vllm-python PATH "
        f"or set ${PYTHON_ENV}"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The process-group leader between us and vLLM. vLLM's engine processes do not die with its API server, so the
# whole group is ended when vLLM exits, or when our end of the watchdog's stdin closes (we exited or were killed,
# SIGKILL included). vLLM's own exit status goes to the log first.
WATCHDOG = """
import os, signal, subprocess, sys, threading
server = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
def end_group(why):
    sys.stderr.write(f"== watchdog: {why}; stopping the process group\\n")
    sys.stderr.flush()
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        pass
    os.killpg(0, signal.SIGKILL)
threading.Thread(target=lambda: end_group(f"vLLM exited with status {server.wait()}"), daemon=True).start()
sys.stdin.buffer.read()
end_group("its client is gone")
"""


@dataclass
class VllmServerOptions:
    model_dir: Path
    log_path: Path
    python: Path
    served_model_name: str = "model"
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    dtype: str = "bfloat16"
    cpu_kv_cache_gib: int = 1  # VLLM_CPU_KVCACHE_SPACE for the CPU build (ignored by GPU builds)
    startup_timeout: float = 600.0
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    def command(self, port: int) -> list[str]:
        command = [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir),
            "--served-model-name", self.served_model_name,
            "--host", "127.0.0.1",
            "--port", str(port),
            "--dtype", self.dtype,
            "--tensor-parallel-size", str(self.tensor_parallel_size),
        ]  # fmt: skip
        if self.max_model_len:
            command += ["--max-model-len", str(self.max_model_len)]
        return command + list(self.extra_args)


class VllmServer:
    """`with VllmServer(options) as server:` serves at `server.base_url` until the block ends."""

    def __init__(self, options: VllmServerOptions):
        self.options = options
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> VllmServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        options = self.options
        if not (Path(options.model_dir) / "config.json").is_file():
            raise UserError(
                f"{options.model_dir}: not an HF model directory (no config.json) for vLLM to serve"
            )
        self.port = free_port()
        env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE=str(options.cpu_kv_cache_gib))
        options.log_path.parent.mkdir(parents=True, exist_ok=True)
        clock = time.perf_counter()
        with open(options.log_path, "ab") as log:
            log.write(f"\n== {' '.join(options.command(self.port))}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-c", WATCHDOG, *options.command(self.port)],
                stdin=subprocess.PIPE,  # never written: its closing tells the watchdog we are gone
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, killed as one
            )
        try:
            self._wait_until_healthy(clock + options.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.perf_counter() - clock

    def _wait_until_healthy(self, deadline: float) -> None:
        while True:
            self.check()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.perf_counter() > deadline:
                raise ServiceUnreachableError(
                    f"vLLM server did not become healthy within {self.options.startup_timeout:.0f}s; "
                    f"{self.log_tail()}"
                )
            time.sleep(0.5)

    def check(self) -> None:
        """Raise ServiceUnreachableError if the server process has exited."""
        if self.process is not None and (code := self.process.poll()) is not None:
            raise ServiceUnreachableError(f"vLLM server exited (watchdog status {code}); {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.options.log_path
        try:
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return f"no log at {path}"
        return f"last lines of {path}:\n" + "\n".join(lines)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM to the whole process group, SIGKILL to whatever is left after `grace` seconds; idempotent."""
        with self._lock:
            process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
        with contextlib.suppress(ProcessLookupError):  # the group may outlive its leader
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
