"""Every JSON body the API parses, fuzzed (Hypothesis over raw bytes and over mutated valid bodies): the answer
is always a 2xx or a 4xx problem (``application/problem+json`` with a ``detail``), never a 5xx."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_support import Api

#: every route that reads a JSON body, with a valid body to mutate
BODIES: list[tuple[str, bytes]] = [
    ("/api/v1/observations", b'{"event_type":"payment.created","sector":"finance","value":{"transaction_amount":5}}'),
    ("/api/v1/observations/batch",
     b'{"observations":[{"event_type":"payment.created","sector":"finance","value":{"a":[1,2.5,"x",null]}}]}'),
    ("/api/v1/cycles", b'{"sector":"logistics"}'),
    ("/api/v1/patterns/detect", b'{"sector":"finance"}'),
    ("/api/v1/proposals", b'{"sector":"finance","rationale":"r","additions":[["<urn:a>","<urn:b>","\\"c\\""]]}'),
    ("/api/v1/proposals/p-1/approvals", b'{"decision":"approve","comment":"ok"}'),
    (f"/api/v1/snapshots/{'a' * 64}/promote", b'{"sector":"finance","force":false,"reason":"r"}'),
    ("/api/v1/snapshots/rollback", b'{"sector":"finance","reason":"r"}'),
]
SNIPPETS = [b'"\\ud800"', b'"\\udfff"', b',"sector":"x"', b',"a":1,"a":2', b"NaN", b"-Infinity", b"1e400",
            b"1" * 5000, b"[" * 2000, b"{" * 600, b"\x00", b"\xff\xfe", b"\xed\xa0\x80", b'"\\u0000"', b"}", b"]",
            b'"', b"\\", b"\xef\xbb\xbf", b"true", b"{}", b"[]", b'{"value":' * 70, b"-0", b"0.0e-0", b'"\\x41"']


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


HOSTILE_VALUES: list[Any] = ["\ud800", "\udc00", "a\ud83d", "\ud800\ud800", float("nan"), float("inf"),
                             -float("inf"), 10**30, -(10**19), 2**63, 2**64, "x" * 70_000, _nested(200),
                             _nested(1100), {"": None}, "\x00", True, None, [], {}, 1e308, -0.0, "\ufffe",
                             "1000001", {"a": {"b": {"c": "\udfff"}}}]


@st.composite
def hostile(draw: st.DrawFn, body: bytes) -> bytes:
    """The valid body with one value or key replaced by something hostile, or a duplicate key injected."""
    value = json.loads(body)
    node: Any = value
    while True:  # walk down to a random container
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        containers = [(k, v) for k, v in children if isinstance(v, dict | list) and v]
        if not containers or draw(st.booleans()):
            break
        node = draw(st.sampled_from(containers))[1]
    bad = draw(st.sampled_from(HOSTILE_VALUES))
    if isinstance(node, dict):
        keys = sorted(node)
        if keys and draw(st.booleans()):
            node[draw(st.sampled_from(keys))] = bad
        else:
            node[draw(st.sampled_from(["value", "sector", "\ud800", "", "id", "x"]))] = bad
    elif node:
        node[draw(st.integers(0, len(node) - 1))] = bad
    text = json.dumps(value).encode()  # ensure_ascii: a lone surrogate becomes a \ud800 escape; NaN stays NaN
    if draw(st.booleans()):
        braces = [i for i, c in enumerate(text) if c == ord("{")]
        at = draw(st.sampled_from(braces)) + 1
        dup = b'"sector":"finance","sector":"healthcare"' + (b"" if text[at:at + 1] == b"}" else b",")
        text = text[:at] + dup + text[at:]
    return text


@st.composite
def mutated(draw: st.DrawFn, body: bytes) -> bytes:
    out = body
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(out)))
        cut = draw(st.integers(0, 3))
        out = out[:at] + draw(st.sampled_from(SNIPPETS)) + out[at + cut:]
    return out


@pytest.mark.parametrize(("path", "body"), BODIES, ids=[p for p, _ in BODIES])
def test_every_body_parser_answers_4xx_problems_never_5xx(api: Api, path: str, body: bytes) -> None:
    headers = {"Content-Type": "application/json", **api.token("administrator", sector="compliance")}

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(st.binary(max_size=400), mutated(body), hostile(body), st.just(body)))
    def check(payload: bytes) -> None:
        response = api.client.post(path, content=payload, headers=headers)
        assert response.status_code < 500, (payload[:200], response.status_code, response.text[:500])
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json", response.text[:200]
            problem: dict[str, Any] = response.json()
            assert problem["status"] == response.status_code
            assert problem["detail"]

    check()
