"""The observation contract of SPEC §2: fields, limits, clock skew and content identity."""

from __future__ import annotations

import uuid

import pytest

from knhk.errors import InvalidInputError, PayloadTooLargeError, UsageError
from knhk.observations.model import MAX_VALUE_BYTES, Observation, check_skew, parse_observation
from knhk.ops.clock import parse_rfc3339

NOW = parse_rfc3339("2024-05-01T12:00:00Z")


def parse(**raw: object) -> Observation:
    base: dict[str, object] = {"event_type": "payment.created", "sector": "finance"}
    base.update(raw)
    return parse_observation(base, received_us=NOW)


def test_minimal_observation_gets_a_uuid7_and_the_receipt_time() -> None:
    obs = parse_observation({"event_type": "payment.created", "sector": "finance"}, received_us=NOW,
                            client="svc-a")
    assert uuid.UUID(obs.id).version == 7
    assert obs.ts_us == NOW
    assert obs.ts_defaulted
    assert not obs.client_id
    assert obs.value == {}
    assert obs.metadata == {}
    assert obs.client == "svc-a"


def test_full_observation_keeps_every_field() -> None:
    obs = parse_observation({"id": "order-17:a.b_c", "event_type": "payment.created", "sector": "finance",
                             "timestamp": "2024-05-01T14:00:00.250+02:00",
                             "value": {"transaction_amount": 12.5, "nested": {"a": [1, None, True]}},
                             "metadata": {"level": "info"}}, received_us=NOW)
    assert obs.id == "order-17:a.b_c"
    assert obs.client_id
    assert obs.ts_us == NOW + 250_000
    assert not obs.ts_defaulted
    assert obs.value["transaction_amount"] == 12.5
    assert obs.metadata == {"level": "info"}


@pytest.mark.parametrize("raw", [[], "text", 3, None])
def test_a_non_object_is_a_usage_error(raw: object) -> None:
    with pytest.raises(UsageError, match="must be a JSON object"):
        parse_observation(raw, received_us=NOW)


def test_unknown_top_level_keys_are_refused_by_name() -> None:
    with pytest.raises(InvalidInputError, match=r"unknown field.*severity"):
        parse(severity="high")


@pytest.mark.parametrize(("name", "bad"), [
    ("id", ""), ("id", "x" * 129), ("id", "has space"), ("id", "new\nline"), ("id", 17), ("id", "é"),
    ("event_type", ""), ("event_type", "a/b"), ("event_type", "x" * 129), ("event_type", None),
    ("sector", "Finance"), ("sector", "1finance"), ("sector", "f" * 64), ("sector", "finance\n"),
    ("sector", "fin_ance"), ("sector", None),
])
def test_identifiers_follow_their_rules(name: str, bad: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        parse(**{name: bad})
    assert name in str(info.value)
    assert info.value.details["field"] == name


def test_identifier_limits_are_inclusive() -> None:
    obs = parse(id="x" * 128, event_type="e" * 128, sector="f" + "a" * 62)
    assert len(obs.id) == 128
    assert len(obs.event_type) == 128
    assert len(obs.sector) == 63


@pytest.mark.parametrize("bad", [
    "2024-05-01T12:00:00", "2024-05-01", "2024-05-01 12:00:00Z", "2024-02-30T12:00:00Z",
    "2024-05-01T25:00:00Z", "20240501T120000Z", 1714564800, "yesterday",
])
def test_timestamps_must_be_rfc3339_with_an_offset(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="RFC 3339") as info:
        parse(timestamp=bad)
    assert info.value.details["field"] == "timestamp"


def test_value_must_be_an_object_of_json_values() -> None:
    with pytest.raises(InvalidInputError, match="value must be a JSON object"):
        parse(value=[1, 2])
    with pytest.raises(InvalidInputError, match="not a JSON number"):
        parse(value={"x": float("nan")})
    with pytest.raises(InvalidInputError, match=r"value.a\[0\]: a set is not a JSON value"):
        parse(value={"a": [{1, 2}]})
    with pytest.raises(InvalidInputError, match="64 signed bits"):
        parse(value={"big": 2**70})


def test_value_size_limit_is_64_kib_encoded() -> None:
    overhead = len('{"s":""}')
    exact = parse(value={"s": "a" * (MAX_VALUE_BYTES - overhead)})
    assert len(exact.value["s"]) == MAX_VALUE_BYTES - overhead
    with pytest.raises(PayloadTooLargeError, match=r"65537 bytes.*65536"):
        parse(value={"s": "a" * (MAX_VALUE_BYTES - overhead + 1)})


def test_metadata_is_a_string_map() -> None:
    with pytest.raises(InvalidInputError, match=r"metadata.level must be a string"):
        parse(metadata={"level": 3})
    with pytest.raises(InvalidInputError, match="metadata must be an object"):
        parse(metadata=["level"])
    with pytest.raises(PayloadTooLargeError, match="65 keys"):
        parse(metadata={f"k{i}": "v" for i in range(65)})


US = 1_000_000


@pytest.mark.parametrize(("offset_us", "skewed"), [
    (0, False), (5 * US, False), (-5 * US, False), (5 * US + 1, True), (-(5 * US + 1), True),
    (60 * US, True), (-60 * US, True),
])
def test_clock_skew_policy_accepts_up_to_60_s(offset_us: int, skewed: bool) -> None:
    assert check_skew(NOW + offset_us, NOW) is skewed


@pytest.mark.parametrize("offset_us", [60 * US + 1, -(60 * US + 1), 3600 * US])
def test_clock_skew_beyond_60_s_is_rejected_with_skew_and_limit(offset_us: int) -> None:
    with pytest.raises(InvalidInputError, match=r"(ahead of|behind) the server.s clock \(.*\); the limit is 60 s"):
        check_skew(NOW + offset_us, NOW)


def test_content_hash_identifies_content_not_spelling() -> None:
    a = parse(id="k1", timestamp="2024-05-01T12:00:00Z", value={"a": 1, "b": 2.5})
    b = parse(id="k1", timestamp="2024-05-01T14:00:00+02:00", value={"b": 2.5, "a": 1})
    c = parse(id="k1", timestamp="2024-05-01T12:00:00Z", value={"a": 1, "b": 2.6})
    d = parse(id="k1", timestamp="2024-05-01T12:00:00Z", value={"a": 1, "b": 2.5}, metadata={"x": "y"})
    assert a.content_hash == b.content_hash
    assert len({a.content_hash, c.content_hash, d.content_hash}) == 3


def test_a_defaulted_timestamp_is_not_part_of_the_content() -> None:
    first = parse_observation({"id": "k", "event_type": "e", "sector": "s"}, received_us=NOW)
    retry = parse_observation({"id": "k", "event_type": "e", "sector": "s"}, received_us=NOW + 90 * US)
    explicit = parse_observation({"id": "k", "event_type": "e", "sector": "s",
                                  "timestamp": "2024-05-01T12:00:00Z"}, received_us=NOW)
    assert first.content_hash == retry.content_hash
    assert explicit.content_hash != first.content_hash


@pytest.mark.parametrize(("event_type", "metadata", "is_error"), [
    ("payment.error", {}, True), ("PaymentERROR", {}, True), ("payment.created", {"level": "error"}, True),
    ("payment.created", {"level": "ERROR"}, True), ("payment.created", {"level": "warning"}, False),
    ("payment.created", {}, False),
])
def test_error_events_for_the_error_spike_detector(event_type: str, metadata: dict[str, str],
                                                    is_error: bool) -> None:
    assert parse(event_type=event_type, metadata=metadata).is_error is is_error
