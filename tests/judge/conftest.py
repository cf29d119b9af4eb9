"""The `server` fixture for the judge's `run` tests: a real OpenAI-compatible server on 127.0.0.1
(limit_foundry.testing.fake_openai) started in-process on an ephemeral port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from run_fixtures import API_KEY, MODEL

from limit_foundry.testing.fake_openai import FakeOpenAIServer


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models=(MODEL,), api_key=API_KEY) as running:
        yield running
