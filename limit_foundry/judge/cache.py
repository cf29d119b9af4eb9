"""Content-addressed cache of successful judge responses, so no judgment is ever paid for twice.

The key is a hash of the provider (host and path of the endpoint, never the API key), the template
hash and the exact request body (model, messages with both answers, decoding). Change any of them and
the key changes; nothing else can make a cached response wrong. Only responses that yielded a verdict
are stored: errors, refusals and unparseable replies are never cached. Entries are written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from limit_foundry.io import atomic_write_json, stable_json_hash

CACHE_ENV = "LIMIT_FOUNDRY_CACHE"


def default_cache_dir() -> Path:
    """$LIMIT_FOUNDRY_CACHE, else ~/.cache/limit_foundry/judge."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "limit_foundry" / "judge"


def provider_of(base_url: str) -> str:
    """`host[:port]/path` of an endpoint: the provider part of a cache key (credentials dropped)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{host}{parts.path.rstrip('/')}"


def request_key(provider: str, template_hash: str, body: dict[str, Any]) -> str:
    return stable_json_hash({"provider": provider, "template_hash": template_hash, "body": body})


class ResponseCache:
    """`root/<key[:2]>/<key>.json` holding the raw response JSON; `root=None` disables caching."""

    def __init__(self, root: Path | None):
        self.root = Path(root).expanduser() if root is not None else None

    def _path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        if self.root is None:
            return None
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None  # absent, or damaged by something outside our atomic writes: a miss
        return entry.get("response") if isinstance(entry, dict) and entry.get("key") == key else None

    def put(self, key: str, provider: str, response: dict[str, Any]) -> None:
        if self.root is not None:
            atomic_write_json(self._path(key), {"key": key, "provider": provider, "response": response})
