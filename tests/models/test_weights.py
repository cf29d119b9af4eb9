"""Weight files reach a model one shard at a time; hub failures are told apart by huggingface_hub's types."""

from __future__ import annotations

import gc
import json
import os
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import limit_foundry.models.weights as weights
from limit_foundry.errors import ModelLoadError
from limit_foundry.models.weights import load_weights_shard_by_shard, weight_files


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def write_shards(directory: Path, state: dict[str, torch.Tensor], parts: list[list[str]]) -> list[Path]:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for i, part in enumerate(parts, start=1):
        name = f"model-{i:05d}-of-{len(parts):05d}.safetensors"
        save_file({k: state[k].clone() for k in part}, directory / name)
        weight_map.update(dict.fromkeys(part, name))
    (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return weight_files(directory)


def test_each_shard_is_released_before_the_next_is_read(tmp_path: Path, monkeypatch) -> None:
    source = small_model()
    state = source.state_dict()
    files = write_shards(tmp_path, state, [["0.weight", "0.bias"], ["2.weight", "2.bias"]])
    read_so_far: list[weakref.ref] = []
    alive_when_read: list[int] = []
    real_read = weights.read_weight_file

    def watching_read(file: Path) -> dict[str, torch.Tensor]:
        gc.collect()
        alive_when_read.append(sum(ref() is not None for ref in read_so_far))
        tensors = real_read(file)
        read_so_far.extend(weakref.ref(t) for t in tensors.values())
        return tensors

    monkeypatch.setattr(weights, "read_weight_file", watching_read)
    target = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    load_weights_shard_by_shard(target, files)
    assert alive_when_read == [0, 0], "a shard's tensors outlived their copy into the model"
    for name, tensor in state.items():
        assert torch.equal(tensor, target.state_dict()[name]), name


def test_a_tensor_in_two_shards_or_absent_everywhere_is_named(tmp_path: Path) -> None:
    state = small_model().state_dict()
    files = write_shards(
        tmp_path / "twice", state, [["0.weight", "0.bias"], ["0.bias", "2.weight", "2.bias"]]
    )
    with pytest.raises(
        ModelLoadError, match=r"00002.safetensors: holds tensors already loaded from .*: 0\.bias"
    ):
        load_weights_shard_by_shard(small_model(), files)
    files = write_shards(tmp_path / "missing", state, [["0.weight"], ["2.weight", "2.bias"]])
    with pytest.raises(ModelLoadError, match=r"missing: weights do not match the model \(missing 0\.bias\)"):
        load_weights_shard_by_shard(small_model(), files)


def test_a_torn_shard_is_named(tmp_path: Path) -> None:
    state = small_model().state_dict()
    files = write_shards(tmp_path, state, [["0.weight", "0.bias"], ["2.weight", "2.bias"]])
    files[1].write_bytes(files[1].read_bytes()[:40])
    with pytest.raises(ModelLoadError, match=r"00002-of-00002.safetensors: weights do not load"):
        load_weights_shard_by_shard(small_model(), files)


class FakeHub(BaseHTTPRequestHandler):
    """Answers the hub's repo-info API as huggingface.co does for a gated repo, a missing repo and a missing
    revision (status plus the `X-Error-Code` header huggingface_hub reads)."""

    ANSWERS = {
        "/api/models/org/gated/revision/main": (403, "GatedRepo"),
        "/api/models/org/missing/revision/main": (404, "RepoNotFound"),
        "/api/models/org/model/revision/v9": (404, "RevisionNotFound"),
    }

    def do_GET(self) -> None:
        status, code = self.ANSWERS.get(self.path, (404, "RepoNotFound"))
        body = json.dumps({"error": code}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


RESOLVE_SCRIPT = """
import json, sys
from limit_foundry.errors import LimitFoundryError
from limit_foundry.models.weights import resolve_checkpoint_dir
answers = {}
for name, revision in json.loads(sys.argv[1]):
    try:
        answers[name] = ["ok", str(resolve_checkpoint_dir(name, revision)), ""]
    except LimitFoundryError as err:
        answers[name] = [type(err).__name__, str(err), type(err.__cause__).__name__]
print(json.dumps(answers))
"""


def resolve_with_hub(
    endpoint: str, cases: list[tuple[str, str | None]], tmp_path: Path, repo_root: Path
) -> dict:
    """`resolve_checkpoint_dir` in a fresh process whose hub is `endpoint` (huggingface_hub reads it at import)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        PYTHONPATH=str(repo_root), HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_ETAG_TIMEOUT="5"
    )
    done = subprocess.run(
        [sys.executable, "-c", RESOLVE_SCRIPT, json.dumps(cases)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_hub_failures_are_told_apart_by_type(fake_hub: str, tmp_path: Path, repo_root: Path) -> None:
    answers = resolve_with_hub(
        fake_hub,
        [
            ("org/gated", None),
            ("org/missing", None),
            ("org/model", "v9"),
            ("runs/lima/hf", None),
            ("./gone", None),
        ],
        tmp_path,
        repo_root,
    )
    kind, message, cause = answers["org/gated"]
    assert (kind, cause) == ("ModelLoadError", "GatedRepoError")
    assert (
        "gated repository" in message
        and "https://huggingface.co/org/gated" in message
        and "HF_TOKEN" in message
    )
    kind, message, cause = answers["org/missing"]
    assert (kind, cause) == ("ModelLoadError", "RepositoryNotFoundError")
    assert message.startswith("org/missing: neither a local directory nor a Hugging Face hub repository")
    kind, message, cause = answers["org/model"]
    assert (kind, cause) == ("ModelLoadError", "RevisionNotFoundError")
    assert message == "org/model: the hub repository has no revision 'v9'"
    assert answers["runs/lima/hf"][:2] == [
        "ModelLoadError",
        "runs/lima/hf: the directory does not exist (nor is it a Hugging Face hub id)",
    ]
    assert answers["runs/lima/hf"][2] == "HFValidationError"
    assert answers["./gone"][:2] == ["ModelLoadError", "./gone: the directory does not exist"]


def test_an_unreachable_hub_without_a_cached_copy_is_a_service_error(tmp_path: Path, repo_root: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    kind, message, cause = resolve_with_hub(closed, [("org/model", None)], tmp_path, repo_root)["org/model"]
    assert (kind, cause) == ("ServiceUnreachableError", "LocalEntryNotFoundError")
    assert "cannot be reached" in message and "pass a local directory" in message
