"""The OpenAI-compatible judge backend, with the SDK's retries off and a retry policy of ours by error class.

| what went wrong                                      | what happens                                       |
|------------------------------------------------------|----------------------------------------------------|
| 429 rate limit                                        | every worker pauses for the server's retry-after;  |
|                                                      | retried, bounded by a total wait per request        |
| 429 insufficient_quota, 401, 403, 404                | the run aborts at once (FatalJudgeError)           |
| 400 context_length_exceeded                          | recorded as failure `context_length`, not retried  |
| any other 400                                        | the run aborts: every request would be rejected    |
| 5xx, timeout, dropped connection, malformed body     | jittered exponential backoff, bounded attempts     |
| any other status                                     | recorded as failure `server_error`                 |
| connection refused/dropped on 8 attempts in a row,   | the run stops dispatching and aborts as            |
| across all requests (the circuit breaker)            | unreachable (exit 3); a rerun resumes it           |

Retries that run out are recorded as `retries_exhausted` with the last error; nothing is dropped.
The circuit breaker keeps a dead server from costing every remaining request its full back-off (half an
hour for a few hundred requests): any answer from the server, even an error status, resets it.
The API key is only handed to the SDK client; it is never part of anything this module returns.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from limit_foundry.errors import EXIT_INTERRUPTED, LimitFoundryError, ServiceUnreachableError
from limit_foundry.judge.cache import provider_of

T = TypeVar("T")
MAX_RETRY_AFTER = 300.0  # seconds: a longer retry-after is capped (and the total wait bound still applies)
PREFLIGHT_PROMPT = "This is an availability check. Reply with the single word OK."


class FatalJudgeError(ServiceUnreachableError):
    """The provider refuses the run (auth, quota, unknown model, every request rejected): continuing would
    fail every request or spend money for nothing, so the run aborts (exit 3) and a rerun resumes it."""


class Interrupted(LimitFoundryError):
    """The run was asked to stop while a request was waiting to be retried (exit 130, as for Ctrl-C)."""

    exit_code = EXIT_INTERRUPTED


class ServerUnreachable(FatalJudgeError):
    """The server stopped answering (connections refused or dropped, attempt after attempt): the circuit
    breaker stops the run instead of letting every request back off in turn."""


class MalformedResponse(ServiceUnreachableError):
    """A 200 answer whose body is not a chat completion: no usable answer, retried like a server error."""


@dataclass(frozen=True)
class Completion:
    """A judge reply: the raw response JSON (what the cache stores) and the fields a verdict needs."""

    response: dict[str, Any]
    text: str | None
    finish_reason: str | None
    refusal: str | None
    usage: dict[str, int] | None

    @classmethod
    def from_response(cls, response: Any) -> Completion:
        try:
            choice = response["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError) as err:
            raise MalformedResponse(f"no choices[0].message in the response ({err!r})") from err
        usage = response.get("usage") or None
        if usage is not None:
            usage = {k: int(usage.get(k) or 0) for k in ("prompt_tokens", "completion_tokens")}
        return cls(
            response, message.get("content"), choice.get("finish_reason"), message.get("refusal"), usage
        )


@dataclass(frozen=True)
class CallFailure:
    """A request that ended without a reply to judge; `failure` is the cause recorded in judgments.jsonl."""

    failure: str
    detail: str


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6  # per request, for 5xx / timeouts / dropped connections / malformed bodies
    backoff_base: float = 1.0  # seconds; doubled per attempt, capped, with jitter
    backoff_cap: float = 30.0
    max_rate_limit_wait: float = 900.0  # seconds one request may spend waiting on 429s in all
    unreachable_after: int = 8  # connection failures in a row, across requests, that abort the run

    def backoff(self, attempt: int) -> float:
        """Equal jitter: half the exponential delay plus a random share of the other half."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(0, attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class RateLimitGate:
    """Shared by all workers: after a 429 nobody sends until the server's retry-after has passed."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def wait(self, stop: threading.Event) -> None:
        while (delay := self._until - time.monotonic()) > 0:
            if stop.wait(delay):
                raise Interrupted("stopped while waiting out a rate limit")


class CircuitBreaker:
    """Shared by all workers: counts connection failures in a row (whichever request they hit) and trips
    when the server has not answered `threshold` attempts running; any answer resets the count."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._failures = 0
        self._lock = threading.Lock()

    def answered(self) -> None:
        with self._lock:
            self._failures = 0

    def failed(self, detail: str) -> None:
        """Count a connection failure; raise ServerUnreachable once `threshold` of them run in a row."""
        with self._lock:
            self._failures += 1
            tripped = self._failures >= self.threshold
        if tripped:
            raise ServerUnreachable(
                f"server unreachable: {self.threshold} connection attempts in a row failed (last: {detail}); "
                "nothing more is sent. Check that the server is up and --base-url, then rerun the same "
                "command to resume"
            )


@dataclass(frozen=True)
class Decision:
    action: str  # "retry", "rate_limited", "fatal" or "record"
    detail: str
    unreachable: bool = False  # no answer at all (a connection failure): counts toward the breaker
    failure: str | None = None  # for "record"
    wait: float | None = None  # for "rate_limited": the server's retry-after


def retry_after_seconds(headers: Any) -> float | None:
    """The wait a 429 asks for: `retry-after-ms`, else `retry-after` (seconds or an HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return min(MAX_RETRY_AFTER, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER, float(value))
    except ValueError:
        try:
            return min(MAX_RETRY_AFTER, max(0.0, parsedate_to_datetime(value).timestamp() - time.time()))
        except (TypeError, ValueError):
            return None


def classify_status(status: int, error: Any, headers: Any = None) -> Decision:
    """What to do about an HTTP error status with its `error` object (from a response or a batch line)."""
    error = error if isinstance(error, dict) else {}
    code, kind = str(error.get("code") or ""), str(error.get("type") or "")
    detail = (
        f"HTTP {status}"
        + (f" {code or kind}" if code or kind else "")
        + f": {error.get('message', '')}"[:300]
    )
    if status == 429:
        if "insufficient_quota" in (code, kind):
            return Decision("fatal", f"quota exhausted at the provider ({detail}); add credit and resume")
        return Decision("rate_limited", detail, wait=retry_after_seconds(headers))
    if status in (401, 403):
        return Decision("fatal", f"not authorised ({detail}); check OPENAI_API_KEY and the base URL")
    if status == 404:
        return Decision("fatal", f"not found ({detail}); check --model and --base-url")
    if status == 400:
        if code == "context_length_exceeded" or "maximum context length" in str(error.get("message", "")):
            return Decision("record", detail, failure="context_length")
        return Decision("fatal", f"the provider rejects the request ({detail})")
    if status in (408, 409) or status >= 500:
        return Decision("retry", detail)
    return Decision("record", detail, failure="server_error")


def classify(err: BaseException) -> Decision:
    """What to do about an exception raised by a call through the openai SDK."""
    import openai

    if isinstance(err, openai.APIStatusError):
        return classify_status(err.status_code, err.body, err.response.headers)
    if isinstance(err, openai.APITimeoutError):
        return Decision("retry", "timed out")
    if isinstance(err, openai.APIConnectionError):
        return Decision("retry", f"connection failed ({err.__cause__ or err})", unreachable=True)
    if isinstance(err, MalformedResponse | json.JSONDecodeError | openai.APIResponseValidationError):
        return Decision("retry", f"malformed response ({err})"[:300])
    raise err


def call_with_retries(
    fn: Callable[[], T],
    policy: RetryPolicy,
    gate: RateLimitGate,
    stop: threading.Event,
    breaker: CircuitBreaker | None = None,
) -> T | CallFailure:
    """Run `fn` under the retry policy: a result, a CallFailure to record, or FatalJudgeError / Interrupted
    (ServerUnreachable when the breaker trips)."""
    breaker = breaker or CircuitBreaker(policy.unreachable_after)
    attempts, rate_waited = 0, 0.0
    while True:
        gate.wait(stop)
        if stop.is_set():
            raise Interrupted("stopped before sending")
        try:
            result = fn()
        except Exception as err:  # classify() re-raises anything that is not an API/transport error
            decision = classify(err)
        else:
            breaker.answered()
            return result
        if decision.unreachable:
            breaker.failed(decision.detail)
        else:
            breaker.answered()
        if decision.action == "fatal":
            raise FatalJudgeError(decision.detail)
        if decision.action == "record":
            return CallFailure(decision.failure or "server_error", decision.detail)
        if decision.action == "rate_limited":
            wait = decision.wait if decision.wait is not None else policy.backoff(attempts + 1)
            rate_waited += wait
            if rate_waited > policy.max_rate_limit_wait:
                return CallFailure(
                    "retries_exhausted", f"{decision.detail} (waited {rate_waited:.0f}s on 429s)"
                )
            gate.pause(wait)
            continue
        attempts += 1
        if attempts >= policy.max_attempts:
            return CallFailure("retries_exhausted", f"{decision.detail} (after {attempts} attempts)")
        if stop.wait(policy.backoff(attempts)):
            raise Interrupted("stopped while backing off")


class OpenAIBackend:
    """Chat completions against any OpenAI-compatible server; thread-safe, one SDK client shared."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout: float = 60.0,
        policy: RetryPolicy | None = None,
    ):
        import openai

        if not api_key:
            raise FatalJudgeError(
                "OPENAI_API_KEY is not set: the openai backend needs a key in the environment"
            )
        self.model = model
        self.provider = provider_of(base_url)
        self.policy = policy or RetryPolicy()
        self.gate = RateLimitGate()
        self.breaker = CircuitBreaker(self.policy.unreachable_after)
        self.client = openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)

    def retrying(
        self, fn: Callable[[], T], stop: threading.Event, breaker: CircuitBreaker | None = None
    ) -> T | CallFailure:
        return call_with_retries(fn, self.policy, self.gate, stop, breaker or self.breaker)

    def complete(
        self, body: dict[str, Any], stop: threading.Event, breaker: CircuitBreaker | None = None
    ) -> Completion | CallFailure:
        def call() -> Completion:
            raw = self.client.chat.completions.with_raw_response.create(**body)
            return Completion.from_response(json.loads(raw.http_response.text))

        return self.retrying(call, stop, breaker)

    def preflight(self, stop: threading.Event) -> str:
        """Check that the judge model exists and answers before anything is spent; returns a summary.
        A server refusing every connection is called unreachable once the request's attempts run out."""
        where = f"pre-flight: model {self.model!r} at {self.provider}"
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": PREFLIGHT_PROMPT}],
            "max_tokens": 5,
        }
        breaker = CircuitBreaker(min(self.policy.unreachable_after, self.policy.max_attempts))
        try:
            found = self.retrying(lambda: self.client.models.retrieve(self.model), stop, breaker)
            reply = found if isinstance(found, CallFailure) else self.complete(body, stop, breaker)
        except FatalJudgeError as err:
            raise FatalJudgeError(f"{where}: {err}") from err
        if isinstance(reply, CallFailure):
            raise FatalJudgeError(f"{where} does not answer: {reply.detail}")
        if not (reply.text or "").strip():
            raise FatalJudgeError(f"{where} answered with no text ({reply.refusal or 'empty reply'})")
        return f"{where} answers"
