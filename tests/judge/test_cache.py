"""The response cache: content-addressed keys, credentials never in the key, damage read as a miss."""

from __future__ import annotations

from limit_foundry.judge.cache import ResponseCache, default_cache_dir, provider_of, request_key

BODY = {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "temperature": 0}


def test_keys_change_with_provider_template_and_body_and_nothing_else():
    key = request_key("api.openai.com/v1", "t1", BODY)
    assert key == request_key("api.openai.com/v1", "t1", dict(reversed(BODY.items())))
    assert key != request_key("other.example/v1", "t1", BODY)
    assert key != request_key("api.openai.com/v1", "t2", BODY)
    assert key != request_key("api.openai.com/v1", "t1", BODY | {"max_tokens": 6})
    assert key != request_key(
        "api.openai.com/v1", "t1", BODY | {"messages": [{"role": "user", "content": "y"}]}
    )


def test_provider_drops_credentials_and_scheme():
    assert provider_of("https://user:sk-secret@api.example.com:8443/v1/") == "api.example.com:8443/v1"
    assert provider_of("https://api.openai.com/v1") == "api.openai.com/v1"


def test_put_get_and_damaged_entries(tmp_path):
    cache = ResponseCache(tmp_path)
    key = request_key("p", "t", BODY)
    assert cache.get(key) is None
    cache.put(key, "p", {"choices": [1]})
    assert cache.get(key) == {"choices": [1]}
    path = next(tmp_path.rglob(f"{key}.json"))
    path.write_text('{"key": "' + key + '", "response": {"choi')  # damaged outside our atomic writes
    assert cache.get(key) is None
    disabled = ResponseCache(None)
    disabled.put(key, "p", {"choices": [1]})
    assert disabled.get(key) is None


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("LIMIT_FOUNDRY_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("LIMIT_FOUNDRY_CACHE")
    assert default_cache_dir().parts[-3:] == (".cache", "limit_foundry", "judge")
