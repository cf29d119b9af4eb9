"""Every entry point this package declares resolves through LLM Foundry's registries, under a new name."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import distribution

import pytest

ENTRY_POINTS = [ep for ep in distribution("limit-foundry").entry_points if ep.group.startswith("llmfoundry_")]

# Built-ins are registered when llmfoundry is imported; entry points only when looked up by name.
# A fresh interpreter that imports llmfoundry and looks nothing up therefore lists the built-ins alone.
_LIST_BUILTINS = """
import json, catalogue
from llmfoundry import registry
groups = {g: sorted(k[-1] for k in catalogue._get_all(getattr(registry, g).namespace)) for g in GROUPS}
print(json.dumps(groups))
"""


@pytest.fixture(scope="module")
def builtin_names() -> dict[str, list[str]]:
    groups = sorted({ep.group.removeprefix("llmfoundry_") for ep in ENTRY_POINTS})
    code = f"GROUPS = {groups!r}\n{_LIST_BUILTINS}"
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_package_registers_at_least_the_model_loader() -> None:
    assert ("llmfoundry_models", "limit_hf_mpt") in {(ep.group, ep.name) for ep in ENTRY_POINTS}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS, ids=lambda ep: f"{ep.group}:{ep.name}")
def test_entry_point_resolves_and_does_not_shadow_a_builtin(entry_point, builtin_names) -> None:
    from llmfoundry import registry

    group = entry_point.group.removeprefix("llmfoundry_")
    # An entry point named like a built-in silently replaces it (LLM Foundry 0.22's catalogue registries).
    assert entry_point.name not in builtin_names[group], f"{entry_point.name} shadows LLM Foundry's built-in"
    resolved = getattr(registry, group).get(entry_point.name)
    assert resolved is entry_point.load()
    assert resolved.__module__.startswith("limit_foundry.")
