"""The test server speaks the OpenAI wire format, decides verdicts as a pure function of the request,
enforces a requests-per-minute limit and counts what it saw."""

from __future__ import annotations

import json
import subprocess
import sys

import openai
import pytest

from limit_foundry.judge.prompts import Slots, load_template
from limit_foundry.testing.fake_openai import FakeOpenAIServer, Fault, body_key


def _client(server: FakeOpenAIServer, key: str = "sk-x") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=server.base_url, max_retries=0, timeout=5)


def test_chat_models_and_auth_in_the_real_wire_format():
    with FakeOpenAIServer(models=("judge-a", "judge-b"), api_key="sk-x") as server:
        client = _client(server)
        assert [m.id for m in client.models.list()] == ["judge-a", "judge-b"]
        messages = load_template("pairwise").render(Slots("Q?", "short", "much longer"))
        reply = client.chat.completions.create(model="judge-a", messages=messages, max_tokens=50)
        assert reply.choices[0].message.content.endswith("Verdict: [[2]]")
        assert (
            reply.choices[0].finish_reason == "stop" and reply.usage.total_tokens > reply.usage.prompt_tokens
        )
        with pytest.raises(openai.AuthenticationError):
            _client(server, "sk-wrong").models.list()
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("gpt-4-0613")
        body = {"model": "judge-a", "messages": messages, "max_tokens": 50}
        assert server.counters.completions[body_key(body)] == 1
        assert server.counters.judgment_completions == 1


@pytest.mark.parametrize(
    ("policy", "expected"), [("longer", 2), ("shorter", 1), ("first", 1), ("second", 2), ("tie", 0)]
)
def test_verdict_policies_are_pure_functions_of_the_request(policy, expected):
    server = FakeOpenAIServer(policy=policy)
    messages = load_template("lima3").render(Slots("Q?", "short", "much longer"))
    template, fields = server.recognise(messages)
    assert template.name == "lima3" and fields["output_2"] == "much longer"
    assert server.verdict(fields) == expected
    hashed = FakeOpenAIServer(policy="hash")
    assert len({hashed.verdict(fields) for _ in range(5)}) == 1
    assert server.recognise([{"role": "user", "content": "hello"}]) is None


def test_requests_per_minute_are_enforced_with_retry_after():
    with FakeOpenAIServer(rpm=3) as server:
        client = _client(server)
        for _ in range(3):
            client.chat.completions.create(model="fake-judge", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model="fake-judge", messages=[{"role": "user", "content": "hi"}])
        assert 0 < float(err.value.response.headers["retry-after-ms"]) <= 20_000
        assert err.value.code == "rate_limit_exceeded" and server.counters.rate_limited == 1


def test_fault_rules_fire_per_key_and_in_total():
    with FakeOpenAIServer(faults=[Fault("server_503", scope="all", per_key=1, total=2)]) as server:
        client = _client(server)
        outcomes = []
        for text in ("a", "a", "b", "c"):
            try:
                client.chat.completions.create(
                    model="fake-judge", messages=[{"role": "user", "content": text}]
                )
                outcomes.append("ok")
            except openai.InternalServerError:
                outcomes.append("503")
        assert outcomes == ["503", "ok", "503", "ok"] and server.counters.faults["server_503"] == 2
    with pytest.raises(ValueError, match="unknown fault"):
        Fault("meteor")


def test_files_and_batches_including_cancel():
    with FakeOpenAIServer(batch_delay=30) as server:
        client = _client(server)
        line = {
            "custom_id": "k",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "fake-judge"},
        }
        uploaded = client.files.create(
            file=("in.jsonl", json.dumps(line).encode(), "application/jsonl"), purpose="batch"
        )
        assert client.files.content(uploaded.id).text == json.dumps(line)
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert client.batches.retrieve(batch.id).status == "in_progress"
        assert client.batches.cancel(batch.id).status == "cancelled"
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_missing")


def test_runnable_with_python_m_for_trying_the_judge_offline():
    done = subprocess.run(
        [sys.executable, "-m", "limit_foundry.testing.fake_openai", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m limit_foundry.testing.fake_openai")
    assert "--policy" in done.stdout and "--fault" in done.stdout
