"""Shared test fixtures: repository paths and the real data in ../shared (skipped clearly when absent)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = (REPO_ROOT.parent / "shared").resolve()

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared` beside the repo (real data for tests); tests that need it skip when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"real data absent: {SHARED_DIR} does not exist")
    return SHARED_DIR


@pytest.fixture(scope="session")
def tiny_hub_mpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MPT saved as an HF directory; loads through `limit_hf_mpt` like a hub checkpoint."""
    from limit_foundry.models.tiny import build_tiny_mpt

    directory = tmp_path_factory.mktemp("tiny_hub_mpt")
    build_tiny_mpt(directory)
    return directory
