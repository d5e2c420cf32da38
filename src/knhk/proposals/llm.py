"""The optional LLM proposer (SPEC §5): an OpenAI-compatible chat-completions client, untrusted.

:class:`LlmProposer` asks any OpenAI-compatible endpoint (``POST {url}/chat/completions``: OpenAI, vLLM,
llama.cpp server, ollama's ``/v1``) for a ΔΣ, with the prompt and strict JSON schema of
:mod:`knhk.proposals.prompt`. The call is httpx with a connect and a read timeout, under the process's
circuit breaker of the ``llm`` dependency (:func:`knhk.ops.resilience.breaker_for`): timeouts, unreachable
endpoints and HTTP errors count as its failures; after ``KNHK_BREAKER_FAIL_MAX`` (5) in a row it opens and
cycles stop waiting for the endpoint until it half-opens.

Before each call the allowance checks the rate limit (requests per rolling hour, default 10) and the token
budget (tokens per rolling hour, default 50,000; a call is refused when the hour's spent tokens plus the
estimated prompt plus ``max_tokens`` would exceed it; that much is reserved until the answer settles it).
Spent tokens are the ``usage.total_tokens`` the endpoint reports, an estimate (characters / 4) when it reports
none, 0 when no answer came back. The runtime uses :class:`StoredAllowance`: the rows of ``llm_usage``, shared
by every worker and replica; :class:`Allowance` is the same arithmetic in memory. A usable
answer is kept per prompt digest (the request is deterministic, temperature 0), so a pattern that persists over
cycles with nothing else changed costs one call, not one per cycle.

Every failure is an :class:`LlmFailure` with a ``reason`` code the ``proposer.fallback`` receipt carries:
``rate_limit``, ``budget_exhausted``, ``breaker_open``, ``timeout``, ``unreachable``, ``http_error``,
``bad_response``, ``refusal``, ``truncated``, ``parse_failed``, ``schema_violation``, ``empty`` (and, from the
loop, ``refused``: the ΔΣ could not be recorded as a proposal). The caller (the loop) then uses the rule
proposer. A success is only a proposal: it goes through the same pipeline.
"""

from __future__ import annotations

import math
import stat
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from knhk.errors import CircuitOpenError, ConfigurationError, DependencyUnavailableError
from knhk.ops.resilience import breaker_for, state_of
from knhk.proposals import store
from knhk.proposals.prompt import AnswerError, PromptContext, build_request, parse_answer, prompt_digest
from knhk.proposals.proposer import Plan
from knhk.storage.database import Database

DEPENDENCY = "llm"
HOUR_S = 3600.0
REASONS = ("rate_limit", "budget_exhausted", "breaker_open", "timeout", "unreachable", "http_error",
           "bad_response", "refusal", "truncated", "parse_failed", "schema_violation", "empty", "refused")
MAX_RESPONSE_BYTES = 4_194_304
ANSWER_CACHE = 256


@dataclass(frozen=True)
class LlmSettings:
    """How to reach the endpoint and how much of it to use (from ``KNHK_LLM_*``)."""

    url: str
    model: str
    api_key: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_tokens: int = 2048
    requests_per_hour: int = 10
    tokens_per_hour: int = 50_000


class LlmFailure(Exception):
    """The endpoint gave no usable ΔΣ; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.details = details


class _Unavailable(DependencyUnavailableError):
    """A failure of the endpoint itself (counted by the breaker), carrying its reason code."""

    def __init__(self, reason: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.reason = reason


def read_key_file(path: Path) -> str:
    """The API key in ``path``; refused when the file is readable by others than its owner (like every key file
    of KNHK, mode 0600) or empty."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read LLM key file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"LLM key file {path} is not UTF-8 text") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(f"LLM key file {path} is accessible to other users (mode {stat.S_IMODE(mode):04o});"
                                 " make it 0600")
    if not text or any(c.isspace() for c in text):
        raise ConfigurationError(f"LLM key file {path} must hold one API key (non-empty, no whitespace)")
    return text


def _refuse(requests: int, spent: int, expected_tokens: int, requests_per_hour: int, tokens_per_hour: int) -> None:
    if requests >= requests_per_hour:
        raise LlmFailure("rate_limit", f"LLM rate limit reached: {requests_per_hour} requests in the last hour",
                         limit=requests_per_hour)
    if spent + expected_tokens > tokens_per_hour:
        raise LlmFailure("budget_exhausted", f"LLM token budget exhausted: {spent} of {tokens_per_hour} tokens "
                         f"spent in the last hour, this request may need {expected_tokens}", spent=spent,
                         budget=tokens_per_hour)


class Allowance:
    """Requests and tokens of the last hour (rolling) in this process, against the configured limits.

    :meth:`take` admits a call and reserves the tokens it may need; :meth:`spend` settles the reservation
    with what the call spent (0 when no answer came back)."""

    def __init__(self, requests_per_hour: int, tokens_per_hour: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.requests_per_hour = requests_per_hour
        self.tokens_per_hour = tokens_per_hour
        self._clock = clock
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        while self._requests and self._requests[0] <= now - HOUR_S:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= now - HOUR_S:
            self._tokens.popleft()

    def requests_last_hour(self) -> int:
        with self._lock:
            self._trim(self._clock())
            return len(self._requests)

    def spent_tokens(self) -> int:
        with self._lock:
            self._trim(self._clock())
            return max(0, sum(n for _, n in self._tokens))

    def take(self, expected_tokens: int) -> None:
        """Admit one request, or refuse it (:class:`LlmFailure` ``rate_limit`` / ``budget_exhausted``)."""
        with self._lock:
            now = self._clock()
            self._trim(now)
            _refuse(len(self._requests), sum(n for _, n in self._tokens), expected_tokens, self.requests_per_hour,
                    self.tokens_per_hour)
            self._requests.append(now)
            self._tokens.append((now, expected_tokens))

    def spend(self, tokens: int, reserved: int = 0) -> None:
        with self._lock:
            self._tokens.append((self._clock(), max(0, tokens) - reserved))


class StoredAllowance(Allowance):
    """The same limits counted in the database (``llm_usage``), so every worker and replica of the installation
    shares them; admission is serialised by a transaction-scoped lock."""

    LOCK = "knhk.llm.usage"

    def __init__(self, db: Database, requests_per_hour: int, tokens_per_hour: int,
                 now_us: Callable[[], int]) -> None:
        super().__init__(requests_per_hour, tokens_per_hour)
        self.db = db
        self._now_us = now_us

    def _since(self) -> int:
        return self._now_us() - int(HOUR_S * 1_000_000)

    def requests_last_hour(self) -> int:
        with self.db.connection() as conn:
            return store.usage_since(conn, self._since())[0]

    def spent_tokens(self) -> int:
        with self.db.connection() as conn:
            return max(0, store.usage_since(conn, self._since())[1])

    def take(self, expected_tokens: int) -> None:
        with self.db.transaction(lock=self.LOCK) as conn:
            requests, spent = store.usage_since(conn, self._since())
            _refuse(requests, spent, expected_tokens, self.requests_per_hour, self.tokens_per_hour)
            store.insert_usage(conn, self._now_us(), "request", expected_tokens)

    def spend(self, tokens: int, reserved: int = 0) -> None:
        with self.db.transaction() as conn:
            store.insert_usage(conn, self._now_us(), "answer", max(0, tokens) - reserved)


@dataclass(frozen=True)
class LlmPlan:
    """A ΔΣ the model proposed, with what its receipt records."""

    plan: Plan
    model: str  # the configured model name
    prompt_digest: str
    response_model: str | None
    prompt_tokens: int
    completion_tokens: int
    fenced: bool

    def receipt_data(self) -> dict[str, Any]:
        return {"model": self.model, "prompt_digest": self.prompt_digest, "response_model": self.response_model,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "fenced": self.fenced}


def _estimate(chars: int) -> int:
    return math.ceil(chars / 4)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class LlmProposer:
    """Asks the configured endpoint for one ΔΣ per pattern (see the module docstring)."""

    def __init__(self, settings: LlmSettings, *, http: httpx.Client | None = None,
                 allowance: Allowance | None = None) -> None:
        self.settings = settings
        self.endpoint = settings.url.rstrip("/") + "/chat/completions"
        headers = {"Accept": "application/json", "User-Agent": "knhk-llm-proposer"}
        if settings.api_key:
            headers["Authorization"] = f"Bearer {settings.api_key}"
        self._http = http or httpx.Client(
            timeout=httpx.Timeout(settings.read_timeout_s, connect=settings.connect_timeout_s),
            follow_redirects=False, headers=headers)
        self.allowance = allowance or Allowance(settings.requests_per_hour, settings.tokens_per_hour)
        self._answers: OrderedDict[str, LlmPlan] = OrderedDict()  # prompt digest → usable answer (temperature 0)
        self._answers_lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def status(self) -> dict[str, Any]:
        """What ``/health`` shows: the breaker's state (no call is made) and this process's use of the hour."""
        state = state_of(DEPENDENCY) or "closed"
        return {"status": "down" if state == "open" else "up", "breaker": state, "model": self.settings.model,
                "requests_last_hour": self.allowance.requests_last_hour(),
                "requests_per_hour": self.settings.requests_per_hour,
                "tokens_last_hour": self.allowance.spent_tokens(), "tokens_per_hour": self.settings.tokens_per_hour}

    def request_for(self, ctx: PromptContext) -> dict[str, Any]:
        return build_request(self.settings.model, ctx, max_tokens=self.settings.max_tokens)

    def propose(self, ctx: PromptContext) -> LlmPlan:
        """The model's ΔΣ for the context, or :class:`LlmFailure` (with ``details['prompt_digest']``)."""
        request = self.request_for(ctx)
        digest = prompt_digest(request)
        with self._answers_lock:
            known = self._answers.get(digest)
            if known is not None:
                self._answers.move_to_end(digest)
                return known
        body = orjson.dumps(request)
        reserved = _estimate(len(body)) + self.settings.max_tokens
        try:
            self.allowance.take(reserved)
            try:
                data = self._call(body)
            except LlmFailure:
                self.allowance.spend(0, reserved)  # no answer came back: nothing to count
                raise
            answer = self._read(data, digest, len(body), reserved)
        except LlmFailure as exc:
            exc.details.setdefault("prompt_digest", digest)
            raise
        with self._answers_lock:
            self._answers[digest] = answer
            while len(self._answers) > ANSWER_CACHE:
                self._answers.popitem(last=False)
        return answer

    def _call(self, body: bytes) -> dict[str, Any]:
        breaker = breaker_for(DEPENDENCY)
        try:
            with breaker.guard():
                return self._post(body)
        except CircuitOpenError as exc:
            raise LlmFailure("breaker_open", str(exc)) from None
        except _Unavailable as exc:
            raise LlmFailure(exc.reason, str(exc), **exc.details) from None

    def _post(self, body: bytes) -> dict[str, Any]:
        try:
            with self._http.stream("POST", self.endpoint, content=body,
                                   headers={"Content-Type": "application/json"}) as response:
                raw = bytearray()
                for chunk in response.iter_bytes():
                    raw += chunk
                    if len(raw) > MAX_RESPONSE_BYTES:
                        raise _Unavailable("bad_response", f"the LLM endpoint's answer exceeds {MAX_RESPONSE_BYTES}"
                                                           " bytes")
                status = response.status_code
        except httpx.TimeoutException as exc:
            raise _Unavailable("timeout", f"the LLM endpoint did not answer in time ({type(exc).__name__})") from None
        except httpx.HTTPError as exc:
            raise _Unavailable("unreachable", f"the LLM endpoint cannot be reached: {exc}") from None
        if status != 200:
            raise _Unavailable("http_error", f"the LLM endpoint answered HTTP {status}", status=status)
        try:
            data = orjson.loads(bytes(raw))
        except orjson.JSONDecodeError:
            raise _Unavailable("bad_response", "the LLM endpoint's answer is not JSON") from None
        if not isinstance(data, dict):
            raise _Unavailable("bad_response", "the LLM endpoint's answer is not a JSON object")
        return data

    def _read(self, data: dict[str, Any], digest: str, request_chars: int, reserved: int) -> LlmPlan:
        choices = data.get("choices")
        raw_usage = data.get("usage")
        usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
        choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
        message = choice.get("message") if choice is not None else None
        content = message.get("content") if isinstance(message, dict) else None
        prompt_tokens = _int(usage.get("prompt_tokens"))
        completion_tokens = _int(usage.get("completion_tokens"))
        total = _int(usage.get("total_tokens"))
        if total is None:
            total = (prompt_tokens if prompt_tokens is not None else _estimate(request_chars)) + (
                completion_tokens if completion_tokens is not None
                else _estimate(len(content) if isinstance(content, str) else 0))
        self.allowance.spend(total, reserved)
        if not isinstance(message, dict):
            raise LlmFailure("bad_response", "the LLM endpoint's answer has no choices[0].message")
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal.strip():
            raise LlmFailure("refusal", f"the model refused: {refusal.strip()[:500]}")
        finish = choice.get("finish_reason") if choice is not None else None
        if finish == "content_filter":
            raise LlmFailure("refusal", "the endpoint's content filter stopped the answer")
        if finish == "length":
            raise LlmFailure("truncated", "the answer was cut off at max_tokens")
        if not isinstance(content, str):
            raise LlmFailure("bad_response", "the model's message has no text content")
        try:
            answer = parse_answer(content)
        except AnswerError as exc:
            raise LlmFailure(exc.reason, exc.message) from None
        if answer.delta.is_empty:
            raise LlmFailure("empty", "the model proposed an empty ΔΣ")
        plan = Plan(answer.delta, f"LLM ({self.settings.model}): {answer.rationale}",
                    {"proposer": "llm", "model": self.settings.model})
        response_model = data.get("model") if isinstance(data.get("model"), str) else None
        return LlmPlan(plan, self.settings.model, digest, response_model,
                       prompt_tokens if prompt_tokens is not None else _estimate(request_chars),
                       completion_tokens if completion_tokens is not None else _estimate(len(content)),
                       answer.fenced)


__all__ = ["DEPENDENCY", "REASONS", "Allowance", "LlmFailure", "LlmPlan", "LlmProposer", "LlmSettings",
           "StoredAllowance", "read_key_file"]
