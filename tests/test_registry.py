"""Every entry point this package declares resolves through LLM Foundry's registries, under a new name."""

from __future__ import annotations

from importlib.metadata import distribution

import pytest

ENTRY_POINTS = [ep for ep in distribution("limit-foundry").entry_points if ep.group.startswith("llmfoundry_")]


def test_the_package_registers_at_least_the_model_loader() -> None:
    assert ("llmfoundry_models", "limit_hf_mpt") in {(ep.group, ep.name) for ep in ENTRY_POINTS}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS, ids=lambda ep: f"{ep.group}:{ep.name}")
def test_entry_point_resolves_and_does_not_shadow_a_builtin(entry_point) -> None:
    import catalogue
    from llmfoundry import registry

    foundry_registry = getattr(registry, entry_point.group.removeprefix("llmfoundry_"))
    # An entry point named like a built-in silently replaces it (LIMIT_FACTS §4): our names carry a
    # prefix no built-in uses, and whatever holds the name in the registry now must be ours.
    assert entry_point.name.startswith("limit_"), (
        f"{entry_point.name}: registered names must start with limit_"
    )
    registered = catalogue._get_all(foundry_registry.namespace)
    for key, obj in registered.items():
        if key[-1] == entry_point.name:
            assert obj.__module__.startswith("limit_foundry."), f"{entry_point.name} collides with a built-in"
    resolved = foundry_registry.get(entry_point.name)
    assert resolved is entry_point.load()
    assert resolved.__module__.startswith("limit_foundry.")
