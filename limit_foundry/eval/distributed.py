"""The Gauntlet data-parallel: one process per GPU (on CPU, N gloo processes), started by Composer's launcher.

Each process evaluates its share of every benchmark's rows, and the metrics come out as one process's:

- LLM Foundry 0.22 builds every ICL evaluator's DataLoader over a `DistributedSampler` without shuffling
  (`dist.get_sampler(dataset, drop_last=False, shuffle=False)` in
  llmfoundry.eval.datasets.in_context_learning_evaluation), so rank r of N reads rows r, r + N, ...
- When the row count does not divide by N, that sampler repeats the first rows to pad the last batch;
  Composer's eval loop (composer.trainer.trainer, `Trainer._eval_loop`) drops each repeated row from the
  metric update of the rank that holds it.
- Every metric's states (correct, total, ...) are summed across the processes by torchmetrics when the metric
  is computed, so accuracy and example counts cover all rows, each once.

`launch` starts the processes from a plain process; a process started by the launcher (or torchrun) knows its
place from the environment the launcher sets (`current_rank`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from limit_foundry.errors import ModelLoadError

T = TypeVar("T")

# What Composer's launcher (and torchrun) set in each process; a launch from inside a launch must not inherit them.
LAUNCH_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "NODE_RANK",
    "BASE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
)
# The settings a model too large for one GPU is sharded with (Composer FSDP, as LLM Foundry's eval YAMLs
# set it): parameters kept in full precision, gathered layer by layer for each forward. `sync_module_states`
# lets only rank 0 read the weights (`init_device: mixed`); the others receive them from it.
FSDP_EVAL_CONFIG = {
    "sharding_strategy": "FULL_SHARD",
    "mixed_precision": "FULL",
    "forward_prefetch": True,
    "limit_all_gathers": True,
    "sync_module_states": True,
}


@dataclass(frozen=True)
class Rank:
    """This process's place in a data-parallel run: rank 0 of 1 outside a launch."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes results and reports."""
        return self.rank == 0


def current_rank() -> Rank:
    """This process's rank and world size, as the launcher set them (RANK, WORLD_SIZE)."""
    return Rank(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def launch_command(nproc: int, module: str, args: list[str], log_dir: Path) -> list[str]:
    """`composer -n N -m MODULE ARGS`, run by this interpreter; ranks other than 0 write their output to
    `log_dir/rank<r>.{stdout,stderr}.txt`, rank 0 to this process's terminal."""
    return [
        sys.executable, "-m", "composer.cli.launcher", "-n", str(nproc),
        "--stdout", str(log_dir / "rank{rank}.stdout.txt"), "--stderr", str(log_dir / "rank{rank}.stderr.txt"),
        "-m", module, *args,
    ]  # fmt: skip


def launch_environment(nproc: int, on_gpu: bool, base: dict[str, str] | None = None) -> dict[str, str]:
    """The launcher's environment: without an outer launch's variables; on CPU, the cores shared out between
    the processes (OMP_NUM_THREADS, unless set), so N processes do not each start a thread per core."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in LAUNCH_VARIABLES}
    if not on_gpu and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    return env


def launch(nproc: int, module: str, args: list[str], log_dir: Path, on_gpu: bool) -> None:
    """Run `module` in `nproc` processes through Composer's launcher and wait for all of them.

    A failed process stops the others (the launcher does); the error names the exit code and where each
    rank's output is. Ctrl-C is passed on to the launcher, which stops its processes before this returns.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        launch_command(nproc, module, args, log_dir), env=launch_environment(nproc, on_gpu)
    )
    try:
        code = process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    if code != 0:
        raise ModelLoadError(
            f"the {nproc}-process run failed (exit code {code}): rank 0's messages are above; every other "
            f"rank's output is in {log_dir}/rank<r>.stderr.txt"
        )


def initialize() -> None:
    """Join the launch's process group now (LLM Foundry's eval joins the same one later)."""
    from composer.utils import dist, get_device

    dist.initialize_dist(get_device(None))


def from_main(make: Callable[[], T]) -> T:
    """`make()` run on rank 0 only and its value handed to every rank; the others wait for it."""
    from composer.utils import dist

    value = [make() if dist.get_global_rank() == 0 else None]
    dist.broadcast_object_list(value, src=0)
    return value[0]


def barrier() -> None:
    from composer.utils import dist

    dist.barrier()
