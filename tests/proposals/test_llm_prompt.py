"""The LLM proposer's pure parts (SPEC §5): strict answer parsing (one fence tolerated, anything else
``parse_failed``; fields outside the ΔΣ schema ``schema_violation``), deterministic prompts and digests, and
the rolling-hour rate limit and token budget."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from knhk.proposals.delta import DeltaSigma
from knhk.proposals.llm import Allowance, LlmFailure
from knhk.proposals.prompt import (
    MAX_TRIPLES,
    AnswerError,
    Example,
    PromptContext,
    build_request,
    parse_answer,
    prompt_digest,
)

T = ["<https://knhk.dev/ns/finance#A>", "<http://www.w3.org/2000/01/rdf-schema#label>", '"a"']
GOOD: dict[str, Any] = {"rationale": "label A", "additions": [T], "removals": []}


def test_a_plain_answer_parses() -> None:
    a = parse_answer(json.dumps(GOOD))
    assert a.delta == DeltaSigma.of([tuple(T)])  # type: ignore[list-item]
    assert a.rationale == "label A"
    assert not a.fenced


@pytest.mark.parametrize("text", ["```json\n{}\n```", "```\n{}\n```", "  ```JSON\n{}\n```\n", "```json  \n{}\n  ```"])
def test_one_fence_around_the_whole_answer_is_tolerated(text: str) -> None:
    a = parse_answer(text.replace("{}", json.dumps(GOOD)))
    assert a.fenced
    assert a.delta.additions == (tuple(T),)


@pytest.mark.parametrize("text", [
    "Here you go: {}",  # prose first
    "{} thanks",  # trailing prose
    "```json\n{}\n```\n```json\n{}\n```",  # two fences
    "Sure:\n```json\n{}\n```",  # text before the fence
    "```json\n{}\n``` done",  # text after the fence
    "```python\n{}\n```",  # a fence of another language
    "[{}]",  # not an object
    '{"rationale": "a", "rationale": "b", "additions": [], "removals": []}',  # duplicate keys
    '{"rationale": "a", "additions": [], "removals": [], "x": NaN}',
    '{"rationale": "\\ud800", "additions": [], "removals": []}',  # lone surrogate
    "",
])
def test_anything_else_is_parse_failed(text: str) -> None:
    with pytest.raises(AnswerError) as e:
        parse_answer(text.replace("{}", json.dumps(GOOD)))
    assert e.value.reason == "parse_failed"


@pytest.mark.parametrize("answer", [
    {**GOOD, "status": "approved"},
    {**GOOD, "approvals": [{"subject": "compliance"}]},
    {**GOOD, "approved": True},
    {"additions": [T], "removals": []},  # no rationale
    {**GOOD, "rationale": "  "},
    {**GOOD, "additions": [T[:2]]},
    {**GOOD, "additions": [[1, 2, 3]]},
    {**GOOD, "removals": "all"},
    {**GOOD, "additions": [T] * (MAX_TRIPLES + 1)},
    {**GOOD, "additions": [[T[0], T[1], '"' + "x" * 3000 + '"']]},
])
def test_fields_and_shapes_outside_the_schema_are_schema_violations(answer: dict[str, Any]) -> None:
    with pytest.raises(AnswerError) as e:
        parse_answer(json.dumps(answer))
    assert e.value.reason == "schema_violation"


@given(st.text(max_size=200) | st.text(max_size=200).map(lambda t: "```json\n{" + t + "}\n```"))
def test_no_text_makes_the_parser_raise_anything_but_answer_error(text: str) -> None:
    reason = None
    try:
        parse_answer(text)
    except AnswerError as exc:
        reason = exc.reason
    assert reason in (None, "parse_failed", "schema_violation")


def test_the_request_and_its_digest_are_deterministic() -> None:
    ctx = PromptContext("finance", "https://knhk.dev/ns/finance#", {"name": "schema_drift:x", "kind": "schema_drift"},
                        doctrines=[{"id": "FIN-LIMIT-001", "params": {"max": 1.5}}],
                        examples=[Example("accepted", "r1", {"classes_added": ["A"]}),
                                  Example("rejected", "r2", {}, "failed static")])
    a, b = build_request("m", ctx, max_tokens=100), build_request("m", ctx, max_tokens=100)
    assert a == b
    assert prompt_digest(a) == prompt_digest(b)
    assert prompt_digest(a) != prompt_digest(build_request("other", ctx, max_tokens=100))
    user = a["messages"][1]["content"]
    assert '"recent_accepted":[{"rationale":"r1"' in user
    assert '"reason":"failed static"' in user
    assert a["response_format"]["json_schema"]["strict"] is True


def test_allowance_counts_requests_and_tokens_per_rolling_hour() -> None:
    now = [0.0]
    allowance = Allowance(2, 1000, clock=lambda: now[0])
    allowance.take(100)  # reserves 100
    assert allowance.spent_tokens() == 100
    allowance.spend(600, 100)  # the answer spent 600
    assert allowance.spent_tokens() == 600
    with pytest.raises(LlmFailure) as e:
        allowance.take(500)  # 600 spent + 500 > 1000
    assert e.value.reason == "budget_exhausted"
    allowance.take(300)
    allowance.spend(0, 300)  # no answer came back: the reservation is released
    assert allowance.spent_tokens() == 600
    with pytest.raises(LlmFailure) as e:
        allowance.take(0)
    assert e.value.reason == "rate_limit"
    assert allowance.requests_last_hour() == 2
    now[0] = 3600.0  # an hour later both are free again
    assert allowance.spent_tokens() == 0
    allowance.take(900)
