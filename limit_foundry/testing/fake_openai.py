"""A scriptable OpenAI-compatible HTTP server on 127.0.0.1, for the judge's tests and benchmark.

It speaks the wire format the `openai` client expects (chat and text completions with `usage`, models, files,
batches) over a real socket, so the client's own transport is exercised and nothing is patched. The
verdict is a pure function of the request: the server recognises the judge template in the messages,
reads back the instruction and the two answers, applies its policy (e.g. prefer the longer answer)
and replies in the template's own reply format. Faults are injected by rule (429 with retry-after,
quota, 5xx, context length, 401, 404, slow, dropped connection, garbage, refusal, unparseable,
truncated); a token bucket enforces requests per minute; counters record calls per request key and
the most requests in flight.

    python -m limit_foundry.testing.fake_openai --port 8000 --policy longer --latency 0.2 --rpm 300
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import itertools
import json
import math
import random
import re
import socket
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from limit_foundry.io import stable_json_hash
from limit_foundry.judge.prompts import PLACEHOLDERS, Template, load_template

POLICIES = ("longer", "shorter", "first", "second", "tie", "hash")
FAULT_KINDS = (
    "rate_limit",
    "quota",
    "server_500",
    "server_503",
    "context_length",
    "unauthorized",
    "model_not_found",
    "slow",
    "disconnect",
    "garbage",
    "refusal",
    "unparseable",
    "truncated",
)
SCOPES = ("judgments", "all")
_ERRORS: dict[str, tuple[int, dict[str, Any]]] = {
    "quota": (
        429,
        {
            "message": "You exceeded your current quota.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        },
    ),
    "server_500": (500, {"message": "The server had an error.", "type": "server_error", "code": None}),
    "server_503": (
        503,
        {"message": "The engine is currently overloaded.", "type": "server_error", "code": None},
    ),
    "context_length": (
        400,
        {
            "message": "This model's maximum context length is 8192 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        },
    ),
    "unauthorized": (
        401,
        {
            "message": "Incorrect API key provided.",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        },
    ),
    "model_not_found": (
        404,
        {"message": "The model does not exist.", "type": "invalid_request_error", "code": "model_not_found"},
    ),
}


@dataclass
class Fault:
    """An injection rule: the first rule that applies to a request decides what goes wrong with it."""

    kind: str
    match: str | None = None  # only requests whose messages contain this text
    scope: str = "judgments"  # "judgments", or "all" to include the pre-flight and other requests
    per_key: int | None = None  # fire at most this many times per request body (None: every time)
    total: int | None = None  # fire at most this many times in all
    delay: float = 5.0  # `slow`: seconds before the (normal) answer
    retry_after: float = 0.05  # `rate_limit`: the wait the server asks for

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r} (expected one of {FAULT_KINDS})")
        if self.scope not in SCOPES:
            raise ValueError(f"unknown fault scope {self.scope!r} (expected one of {SCOPES})")


@dataclass
class Counters:
    """What the server saw. A completion is a 200 answer: what a real provider would bill."""

    requests: Counter = field(default_factory=Counter)  # chat requests by request key, faulted ones too
    completions: Counter = field(default_factory=Counter)  # 200 answers by request key
    judgment_keys: set = field(default_factory=set)  # keys whose messages matched a judge template
    arrivals: dict = field(default_factory=lambda: defaultdict(list))  # key -> monotonic arrival times
    faults: Counter = field(default_factory=Counter)
    rate_limited: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    files_uploaded: int = 0
    batches_created: int = 0
    batch_lines: int = 0

    @property
    def judgment_completions(self) -> int:
        return sum(n for key, n in self.completions.items() if key in self.judgment_keys)

    @property
    def other_completions(self) -> int:
        return sum(n for key, n in self.completions.items() if key not in self.judgment_keys)


class TokenBucket:
    """Requests per minute as a provider enforces them: a full minute's burst, then a steady refill."""

    def __init__(self, rpm: int):
        self.capacity = float(rpm)
        self.tokens = float(rpm)
        self.rate = rpm / 60.0
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> float:
        """0.0 when a request may pass, else the seconds until the next token."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
            self.last = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return 0.0
            return (1.0 - self.tokens) / self.rate


def body_key(body: dict[str, Any]) -> str:
    """The server's name for a request body (the same body twice is the same key)."""
    return stable_json_hash(body)


def _template_pattern(template: Template) -> list[tuple[str, re.Pattern]]:
    """Per message, its role and a regex that reads the placeholders back out of a rendered message."""
    patterns = []
    for message in template.messages:
        text = re.escape(message["content"])
        for name in PLACEHOLDERS:
            text = text.replace(re.escape("{" + name + "}"), f"(?P<{name}>.*?)", 1)
        patterns.append((message["role"], re.compile(text, re.DOTALL)))
    return patterns


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


class FakeOpenAIServer:
    """Start with `start()` (or as a context manager); `base_url` is then http://127.0.0.1:<port>/v1."""

    def __init__(
        self,
        policy: str = "longer",
        models: tuple[str, ...] = ("fake-judge",),
        api_key: str | None = None,
        latency: float = 0.0,
        rpm: int | None = None,
        faults: list[Fault] | tuple[Fault, ...] = (),
        templates: tuple[str | Template, ...] = ("pairwise", "lima3"),
        batch_delay: float = 0.0,
        batch_shuffle_seed: int | None = 0,
        batch_expire_after: int | None = None,
        batch_expire_count: int = 1,
        retrieve_models: bool = True,  # False: like vLLM, list models but answer 404 to GET /v1/models/{id}
    ):
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r} (expected one of {POLICIES})")
        self.policy = policy
        self.retrieve_models = retrieve_models
        self.models = tuple(models)
        self.api_key = api_key
        self.latency = latency
        self.bucket = TokenBucket(rpm) if rpm else None
        self.faults = list(faults)
        self._patterns: list[tuple[Template, list[tuple[str, re.Pattern]]]] = []
        for template in templates:
            self.add_template(template)
        self.batch_delay = batch_delay
        self.batch_shuffle_seed = batch_shuffle_seed
        self.batch_expire_after = batch_expire_after
        self.batch_expire_count = batch_expire_count
        self.counters = Counters()
        self.lock = threading.RLock()
        self._fired: Counter = Counter()  # (fault index, request key) -> times
        self._fired_total: Counter = Counter()  # fault index -> times
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ----
    def start(self, port: int = 0) -> FakeOpenAIServer:
        handler = type("Handler", (_Handler,), {"app": self})
        httpd = _QuietServer(("127.0.0.1", port), handler, bind_and_activate=False)
        httpd.daemon_threads = True
        httpd.request_queue_size = 256
        httpd.allow_reuse_address = True
        httpd.server_bind()
        httpd.server_activate()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def reset_counters(self) -> None:
        with self.lock:
            self.counters = Counters()
            self._fired.clear()
            self._fired_total.clear()

    # ---- verdicts ----
    def add_template(self, template: str | Template) -> None:
        """Recognise requests rendered from this template (a built-in name, a file, or a loaded one)."""
        loaded = template if isinstance(template, Template) else load_template(template)
        self._patterns.append((loaded, _template_pattern(loaded)))

    def recognise(self, messages: Any) -> tuple[Template, dict[str, str]] | None:
        """The judge template these messages were rendered from, and the values of its placeholders."""
        if not isinstance(messages, list):
            return None
        for template, patterns in self._patterns:
            if len(messages) != len(patterns):
                continue
            fields: dict[str, str] = {}
            for message, (role, pattern) in zip(messages, patterns, strict=True):
                match = (
                    pattern.fullmatch(message.get("content") or "")
                    if isinstance(message, dict) and message.get("role") == role
                    else None
                )
                if match is None:
                    break
                fields.update(match.groupdict())
            else:
                return template, fields
        return None

    def verdict(self, fields: dict[str, str]) -> int:
        """Slot verdict (1, 2, 0 = tie) as a pure function of what the judge was shown."""
        first, second = fields["output_1"], fields["output_2"]
        if self.policy in ("longer", "shorter"):
            if len(first) == len(second):
                return 0
            return 1 if (len(first) > len(second)) == (self.policy == "longer") else 2
        if self.policy == "hash":
            digest = hashlib.sha256(f"{fields['instruction']}\0{first}\0{second}".encode()).digest()
            return digest[0] % 3
        return {"first": 1, "second": 2, "tie": 0}[self.policy]

    def _reply(self, body: dict[str, Any]) -> tuple[str, bool]:
        """(reply text, whether this was a judgment)."""
        recognised = self.recognise(body.get("messages"))
        if recognised is None:
            return "OK", False
        template, fields = recognised
        verdict = self.verdict(fields)
        replies = template.example_replies
        return replies.get(verdict, replies.get(1, "")), True

    def _fault_for(self, key: str, body: dict[str, Any], is_judgment: bool) -> Fault | None:
        text = json.dumps(body.get("messages", body.get("prompt")), ensure_ascii=False)
        with self.lock:
            for index, fault in enumerate(self.faults):
                if fault.scope == "judgments" and not is_judgment:
                    continue
                if fault.match is not None and fault.match not in text:
                    continue
                if fault.per_key is not None and self._fired[(index, key)] >= fault.per_key:
                    continue
                if fault.total is not None and self._fired_total[index] >= fault.total:
                    continue
                self._fired[(index, key)] += 1
                self._fired_total[index] += 1
                self.counters.faults[fault.kind] += 1
                return fault
        return None

    def completion(
        self, body: dict[str, Any], text: str | None, finish: str = "stop", refusal: str | None = None
    ):
        prompt = sum(
            _tokens(str(m.get("content") or "")) for m in body.get("messages") or [] if isinstance(m, dict)
        )
        done = _tokens(text or refusal or "")
        return {
            "id": f"chatcmpl-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": refusal},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done},
        }

    # ---- completions (generation backends): the answer is a pure function of (prompt, seed) ----
    def text_completion(self, body: dict[str, Any], truncated: bool = False) -> dict[str, Any]:
        """A `/v1/completions` reply: a seeded text cut to `max_tokens` (4 characters a token);
        `truncated` answers with a third of it and finish_reason `length`, as a server that stopped early."""
        prompt = body.get("prompt")
        seed = body.get("seed")
        digest = hashlib.sha256(json.dumps([prompt, seed]).encode()).hexdigest()
        text = f"Answer {digest[:12]} (seed {seed}) to a prompt of {len(json.dumps(prompt))} characters."
        cap = 4 * int(body.get("max_tokens") or 16)
        finish = "length" if truncated or len(text) > cap else "stop"
        text = text[: max(1, len(text) // 3)] if truncated else text[:cap]
        prompt_tokens = len(prompt) if isinstance(prompt, list) else _tokens(str(prompt))
        done = _tokens(text)
        return {
            "id": f"cmpl-{next(self._ids)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": done,
                "total_tokens": prompt_tokens + done,
            },
        }

    def answer(self, body: dict[str, Any], in_batch: bool = False) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON payload or raw bytes, extra headers) for one chat request.

        Returns the sentinel payloads "disconnect" / "slow:<s>" for the handler to act on."""
        key = body_key(body)
        text, is_judgment = self._reply(body)
        with self.lock:
            self.counters.requests[key] += 1
            self.counters.arrivals[key].append(time.monotonic())
            if is_judgment:
                self.counters.judgment_keys.add(key)
        if body.get("model") not in self.models:
            return 404, {"error": _ERRORS["model_not_found"][1]}, {}
        fault = self._fault_for(key, body, is_judgment)
        headers: dict[str, str] = {}
        kind = fault.kind if fault else None
        if kind == "rate_limit":
            return 429, self._rate_limited_error(fault.retry_after, headers), headers
        if kind in _ERRORS:
            status, error = _ERRORS[kind]
            return status, {"error": error}, {}
        if not in_batch and self.bucket is not None:
            wait = self.bucket.take()
            if wait > 0:
                return 429, self._rate_limited_error(wait, headers), headers
        if kind == "disconnect" and not in_batch:
            return 200, "disconnect", {}
        if kind == "garbage":
            return 200, b"<html><body>502 Bad Gateway (upstream sent garbage)</body></html>", {}
        if kind == "slow" and not in_batch:
            time.sleep(fault.delay)
        if self.latency and not in_batch:
            time.sleep(self.latency)
        if "prompt" in body:  # the completions endpoint
            payload = self.text_completion(body, truncated=kind == "truncated")
        elif kind == "refusal":
            payload = self.completion(
                body, None, "stop", refusal="I'm sorry, I can't help with comparing these."
            )
        elif kind == "unparseable":
            payload = self.completion(body, "Both answers have merits; it is hard to say.")
        elif kind == "truncated":
            payload = self.completion(body, text[: max(1, len(text) // 3)], "length")
        else:
            payload = self.completion(body, text)
        with self.lock:
            self.counters.completions[key] += 1
        return 200, payload, {}

    def _rate_limited_error(self, wait: float, headers: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            self.counters.rate_limited += 1
        headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        return {
            "error": {
                "message": f"Rate limit reached for requests. Please try again in {wait * 1000:.0f}ms.",
                "type": "requests",
                "code": "rate_limit_exceeded",
            }
        }

    # ---- files and batches ----
    def new_file(self, content: bytes, filename: str, purpose: str) -> dict[str, Any]:
        file_id = f"file-{next(self._ids)}"
        record = {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        with self.lock:
            self.files[file_id] = {"meta": record, "content": content}
        return record

    def create_batch(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        input_id = params.get("input_file_id")
        if input_id not in self.files:
            return 404, {"error": {"message": f"No such file: {input_id}", "type": "invalid_request_error"}}
        batch_id = f"batch_{next(self._ids)}"
        now = int(time.time())
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": params.get("endpoint"),
            "errors": None,
            "input_file_id": input_id,
            "completion_window": params.get("completion_window", "24h"),
            "status": "in_progress",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "in_progress_at": now,
            "expires_at": now + 86400,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": params.get("metadata"),
        }
        with self.lock:
            self.batches[batch_id] = batch
            self.counters.batches_created += 1
            expire = (
                self.batch_expire_after if self.counters.batches_created <= self.batch_expire_count else None
            )
        threading.Thread(target=self._process_batch, args=(batch_id, expire), daemon=True).start()
        return 200, dict(batch)

    def _process_batch(self, batch_id: str, expire_after: int | None) -> None:
        """Answer every line after `batch_delay`; successes go to the output file in shuffled order."""
        time.sleep(self.batch_delay)
        batch = self.batches[batch_id]
        if batch["status"] != "in_progress":
            return
        lines = [
            json.loads(x) for x in self.files[batch["input_file_id"]]["content"].splitlines() if x.strip()
        ]
        outputs, errors = [], []
        for index, line in enumerate(lines):
            custom_id = line.get("custom_id")
            if expire_after is not None and index >= expire_after:
                error = {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion window expired.",
                }
                errors.append(
                    {"id": f"batch_req_{index}", "custom_id": custom_id, "response": None, "error": error}
                )
                continue
            status, payload, _ = self.answer(line.get("body") or {}, in_batch=True)
            if isinstance(payload, bytes):  # garbage inside a batch: reported as a server error
                status, payload = 500, {"error": _ERRORS["server_500"][1]}
            response = {"status_code": status, "request_id": f"req_{index}", "body": payload}
            entry = {"id": f"batch_req_{index}", "custom_id": custom_id, "response": response, "error": None}
            (outputs if status == 200 else errors).append(entry)
        if self.batch_shuffle_seed is not None:
            random.Random(self.batch_shuffle_seed).shuffle(outputs)
        now = int(time.time())
        with self.lock:
            self.counters.batch_lines += len(lines)
            if batch["status"] != "in_progress":  # cancelled meanwhile
                return
            for name, entries in (("output_file_id", outputs), ("error_file_id", errors)):
                if entries:
                    content = "".join(json.dumps(e) + "\n" for e in entries).encode()
                    batch[name] = self.new_file(content, f"{batch_id}_{name}.jsonl", "batch_output")["id"]
            expired = expire_after is not None and expire_after < len(lines)
            batch["status"] = "expired" if expired else "completed"
            batch["expired_at" if expired else "completed_at"] = now
            batch["request_counts"] = {"total": len(lines), "completed": len(outputs), "failed": len(errors)}

    def cancel_batch(self, batch_id: str) -> dict[str, Any]:
        with self.lock:
            batch = self.batches[batch_id]
            if batch["status"] == "in_progress":
                batch["status"] = "cancelled"
                batch["cancelled_at"] = int(time.time())
            return dict(batch)


def _parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Fields of a multipart/form-data body: name -> (filename, bytes)."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[name] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (killed mid-request, timed out) is routine here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    app: FakeOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", f"req_{next(self.app._ids)}")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _drop_connection(self) -> None:
        """Promise a body, send a piece of it, and hang up."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n")
        self.wfile.write(b'{"id": "chatcmpl-cut", "object": "chat.comp')
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _authorised(self) -> bool:
        expected = self.app.api_key
        if expected is None or self.headers.get("Authorization") == f"Bearer {expected}":
            return True
        self._send(401, {"error": _ERRORS["unauthorized"][1]})
        return False

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._authorised():
            return
        app, path = self.app, self.path.split("?")[0].rstrip("/")
        if path == "/health":  # as vLLM's server answers once it is up
            return self._send(200, {})
        if path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in app.models]
            return self._send(200, {"object": "list", "data": data})
        if (match := re.fullmatch(r"/v1/models/(.+)", path)) and app.retrieve_models:
            if match.group(1) in app.models:
                return self._send(
                    200, {"id": match.group(1), "object": "model", "created": 0, "owned_by": "fake"}
                )
            return self._send(404, {"error": _ERRORS["model_not_found"][1]})
        if match := re.fullmatch(r"/v1/files/([^/]+)(/content)?", path):
            stored = app.files.get(match.group(1))
            if stored is None:
                return self._send(
                    404, {"error": {"message": "No such file", "type": "invalid_request_error"}}
                )
            return self._send(200, stored["content"] if match.group(2) else stored["meta"])
        if match := re.fullmatch(r"/v1/batches/([^/]+)", path):
            batch = app.batches.get(match.group(1))
            if batch is None:
                return self._send(
                    404, {"error": {"message": "No such batch", "type": "invalid_request_error"}}
                )
            with app.lock:
                return self._send(200, dict(batch))
        self._send(404, {"error": {"message": f"Unknown path {path}", "type": "invalid_request_error"}})

    def do_POST(self) -> None:  # noqa: N802
        body = self._body()
        if not self._authorised():
            return
        app, path = self.app, self.path.split("?")[0].rstrip("/")
        if path in ("/v1/chat/completions", "/v1/completions"):
            return self._chat(body)
        if path == "/v1/files":
            fields = _parse_multipart(self.headers.get("Content-Type", ""), body)
            filename, content = fields.get("file", (None, b""))
            purpose = fields.get("purpose", (None, b"batch"))[1].decode()
            with app.lock:
                app.counters.files_uploaded += 1
            return self._send(200, app.new_file(content, filename or "upload.jsonl", purpose))
        if path == "/v1/batches":
            return self._send(*app.create_batch(json.loads(body or b"{}")))
        if match := re.fullmatch(r"/v1/batches/([^/]+)/cancel", path):
            if match.group(1) not in app.batches:
                return self._send(
                    404, {"error": {"message": "No such batch", "type": "invalid_request_error"}}
                )
            return self._send(200, app.cancel_batch(match.group(1)))
        self._send(404, {"error": {"message": f"Unknown path {path}", "type": "invalid_request_error"}})

    def _chat(self, raw: bytes) -> None:
        app = self.app
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return self._send(
                400, {"error": {"message": "Invalid JSON body", "type": "invalid_request_error"}}
            )
        with app.lock:
            app.counters.in_flight += 1
            app.counters.max_in_flight = max(app.counters.max_in_flight, app.counters.in_flight)
        try:
            status, payload, headers = app.answer(body)
            if payload == "disconnect":
                return self._drop_connection()
            self._send(status, payload, headers)
        finally:
            with app.lock:
                app.counters.in_flight -= 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m limit_foundry.testing.fake_openai",
        description="Serve a fake OpenAI-compatible judge on 127.0.0.1 for manual tests of `judge run`.",
    )
    parser.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default 8000; 0 = any free port)"
    )
    parser.add_argument(
        "--policy", choices=POLICIES, default="longer", help="how the verdict is chosen (default longer)"
    )
    parser.add_argument(
        "--model", action="append", help="a model name it serves (repeatable; default fake-judge)"
    )
    parser.add_argument("--api-key", help="require this bearer key (default: accept any)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer (default 0)")
    parser.add_argument("--rpm", type=int, help="requests per minute enforced with 429s (default: unlimited)")
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[:PER_KEY]",
        help=f"inject a fault on judgments, optionally at most PER_KEY times per request; kinds: {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument(
        "--template",
        action="append",
        help="judge templates to recognise (repeatable; default pairwise and lima3; `limit` loads alpaca-eval)",
    )
    parser.add_argument("--batch-delay", type=float, default=1.0, help="seconds a batch takes (default 1)")
    args = parser.parse_args(argv)
    faults = []
    for spec in args.fault:
        kind, _, per_key = spec.partition(":")
        faults.append(Fault(kind, per_key=int(per_key) if per_key else None))
    server = FakeOpenAIServer(
        policy=args.policy,
        models=tuple(args.model or ["fake-judge"]),
        api_key=args.api_key,
        latency=args.latency,
        rpm=args.rpm,
        faults=faults,
        templates=tuple(args.template or ["pairwise", "lima3"]),
        batch_delay=args.batch_delay,
    ).start(args.port)
    print(f"fake OpenAI-compatible judge at {server.base_url} (Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
