"""Canonical ledger JSON (SPEC §8) is byte-identical to RFC 8785 (JCS) on its whole domain, and everything
outside the domain is refused with a CanonicalEncodingError that names where the bad value is. Sealed
entry payloads are exactly the JCS encoding of their fields, and the verifier's fast check of stored bytes
(``is_canonical``) agrees with a full re-encoding on canonical and non-canonical payloads alike.

The oracle is the independent ``rfc8785`` package. The domain: str (including characters outside the Basic
Multilingual Plane, also in object keys, where JCS orders keys by UTF-16 code units), int within
±(2^53 − 1), bool, None, and nested lists and objects.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from knhk.errors import CanonicalEncodingError
from knhk.proof.canonical import MAX_SAFE_INT, canonical_bytes, is_canonical
from knhk.proof.entry import EntryDraft, seal
from knhk.proof.signing import SigningKey

NO_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)

# Text biased towards the interesting parts of Unicode: ASCII controls (escaped), BMP, astral planes.
_chars = st.one_of(
    st.characters(exclude_categories=NO_SURROGATES),
    st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF, exclude_categories=NO_SURROGATES),
    st.characters(min_codepoint=0, max_codepoint=0x7F),
    st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF, exclude_categories=NO_SURROGATES),
)
texts = st.text(_chars, max_size=12)
safe_ints = st.integers(min_value=-MAX_SAFE_INT, max_value=MAX_SAFE_INT)
scalars = st.one_of(st.none(), st.booleans(), safe_ints, texts,
                    st.sampled_from([0, -1, 1, MAX_SAFE_INT, -MAX_SAFE_INT]))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(texts, inner, max_size=5)),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_canonical_bytes_equal_rfc8785_on_the_domain(value: Any) -> None:
    encoded = canonical_bytes(value)
    assert encoded == rfc8785.dumps(value)
    assert json.loads(encoded.decode("utf-8")) == value  # valid UTF-8 JSON meaning the same value


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(st.characters(min_codepoint=0xD000, max_codepoint=0x1F000,
                                             exclude_categories=NO_SURROGATES), min_size=1, max_size=3),
                       safe_ints, min_size=2, max_size=8))
def test_object_keys_are_ordered_by_utf16_code_units(value: dict[str, int]) -> None:
    # Keys drawn around the BMP/astral boundary, where UTF-16 order differs from code-point order.
    assert canonical_bytes(value) == rfc8785.dumps(value)
    assert canonical_bytes({"nested": [value]}) == rfc8785.dumps({"nested": [value]})


def test_astral_key_sorts_before_high_bmp_key_as_jcs_requires() -> None:
    value = {"\uffff": 1, "\U00010000": 2, "a": 3}
    expected = '{"a":3,"\U00010000":2,"\uffff":1}'.encode()
    assert canonical_bytes(value) == expected == rfc8785.dumps(value)


def test_escapes_and_integer_bounds() -> None:
    value: dict[str, Any] = {"s": "\x00\x1f\"\\/\x7f\u2028é😀", "max": MAX_SAFE_INT, "min": -MAX_SAFE_INT,
                             "t": True, "n": None}
    assert canonical_bytes(value) == rfc8785.dumps(value)
    assert canonical_bytes(value).startswith(b'{"max":9007199254740991,"min":-9007199254740991,"n":null,')


def _nest(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_limit_is_a_clear_refusal() -> None:
    assert canonical_bytes(_nest(64)) == rfc8785.dumps(_nest(64))
    with pytest.raises(CanonicalEncodingError, match=r"nesting deeper than 64"):
        canonical_bytes(_nest(65))


@pytest.mark.parametrize(
    ("value", "path", "why"),
    [
        ({"a": 1.5}, r"\$\.a:", "float"),
        ({"a": [0.0]}, r"\$\.a\[0\]:", "float"),
        ({"x": {"y": float("nan")}}, r"\$\.x\.y:", "float"),
        ({"x": [1, float("inf")]}, r"\$\.x\[1\]:", "float"),
        ([float("-inf")], r"\$\[0\]:", "float"),
        ({"b": b"bytes"}, r"\$\.b:", "bytes"),
        ({"b": bytearray(b"x")}, r"\$\.b:", "bytearray"),
        ({"n": MAX_SAFE_INT + 1}, r"\$\.n:", "outside"),
        ({"n": -MAX_SAFE_INT - 1}, r"\$\.n:", "outside"),
        ({"n": [2**64]}, r"\$\.n\[0\]:", "outside"),
        ({1: "x"}, r"\$:", "not a string"),
        ({"d": {None: 1}}, r"\$\.d:", "not a string"),
        ({"d": {(1, 2): 1}}, r"\$\.d:", "not a string"),
        ({"s": {1, 2}}, r"\$\.s:", "set"),
        ({"s": frozenset()}, r"\$\.s:", "frozenset"),
        ({"t": "ok \ud800 lone"}, r"\$\.t:", "lone surrogate"),
        ({"t": ["\udfff"]}, r"\$\.t\[0\]:", "lone surrogate"),
        ({"k": {"\udc00": 1}}, r"\$\.k \(key", "lone surrogate"),
        ({"o": object()}, r"\$\.o:", "object"),
    ],
)
def test_values_outside_the_domain_are_refused_naming_the_path(value: Any, path: str, why: str) -> None:
    with pytest.raises(CanonicalEncodingError, match=path) as info:
        canonical_bytes(value)
    assert why in str(info.value)


_bad = st.sampled_from([1.0, -0.5, float("nan"), float("inf"), b"\x00", MAX_SAFE_INT + 1,
                        -(2**60), {1, 2}, "\ud83d", bytearray()])


@settings(max_examples=150, deadline=None)
@given(values, _bad, st.lists(st.one_of(st.integers(0, 3), texts), min_size=1, max_size=6))
def test_a_bad_value_anywhere_is_refused_and_located(good: Any, bad: Any, route: list[Any]) -> None:
    """Plant one bad value at a random place inside a valid document: always refused, path reported."""
    doc: Any = bad
    path = ""
    for step in reversed(route):
        if isinstance(step, int):
            doc = [*([good] * step), doc]
            path = f"[{step}]" + path
        else:
            doc = {step: doc}
            path = f".{step}" + path
    with pytest.raises(CanonicalEncodingError) as info:
        canonical_bytes(doc)
    assert str(info.value).startswith("$" + path), (str(info.value), path)


def test_entry_drafts_refuse_non_canonical_data_before_anything_is_written() -> None:
    with pytest.raises(CanonicalEncodingError, match=r"\$\.data\.ratio"):
        EntryDraft(log="receipts", kind="test.made", data={"ratio": 0.5})
    with pytest.raises(CanonicalEncodingError, match=r"\$\.evidence\[1\]"):
        EntryDraft(log="receipts", kind="test.made", evidence=["ok", 2**53])


KEY = SigningKey(bytes(range(32)))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(texts, values, max_size=4), st.lists(values, max_size=3),
       st.one_of(st.none(), texts), st.one_of(st.none(), st.text(_chars, max_size=40)),
       st.integers(0, MAX_SAFE_INT), st.integers(0, MAX_SAFE_INT))
def test_sealed_payloads_are_the_jcs_encoding_of_their_fields(data: dict[str, Any], evidence: list[Any],
                                                               subject: str | None, reason: str | None,
                                                               seq: int, ts_us: int) -> None:
    draft = EntryDraft(log="audit", kind="test.sealed", sector="finance", subject=subject, reason=reason,
                       outcome=reason or "ok", evidence=evidence, data=data)
    entry = seal(draft, seq, ts_us, None if seq == 0 else "ab" * 32, KEY)
    assert entry.payload == rfc8785.dumps(entry.fields) == canonical_bytes(draft.payload(seq, ts_us, entry.parent,
                                                                                          KEY.key_id))
    assert entry.fields == json.loads(entry.payload)
    assert is_canonical(entry.payload, json.loads(entry.payload))


def _reference_is_canonical(payload: bytes) -> bool:
    try:
        decoded = json.loads(payload)
        return canonical_bytes(decoded) == payload
    except (ValueError, CanonicalEncodingError):
        return False


_variants = st.sampled_from([
    lambda p: p.replace(b":", b": ", 1),           # whitespace
    lambda p: p.replace(b'"v":1', b'"v":1.0'),     # a float that round-trips
    lambda p: p.replace(b'"v":1', b'"v":1e0'),
    lambda p: p.replace(b'"v":1', b'"v":10000000000000000'),  # beyond 2^53
    lambda p: p.replace(b'"v":1', b'"v":-0'),
    lambda p: p.replace("é".encode(), b"\\u00e9"),  # an escape JCS does not use
    lambda p: b" " + p,
    lambda p: p.replace(b'"a"', b'"\\u0061"'),
    lambda p: p.replace(b'{"', b'{"zz":0,"', 1),   # out of order key
    lambda p: p,
])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(texts, values, max_size=5), _variants)
def test_fast_payload_check_agrees_with_full_reencoding(value: dict[str, Any], variant: Any) -> None:
    payload = variant(canonical_bytes({**value, "a": "é", "v": 1}))
    try:
        decoded = json.loads(payload)
    except ValueError:
        return
    assert is_canonical(payload, decoded) == _reference_is_canonical(payload)


def test_fast_payload_check_refuses_floats_and_big_integers_hidden_anywhere() -> None:
    for text in (b'{"a":[1,{"b":2.5}]}', b'{"a":1E+2}', b'{"a":"1.5","b":0.1}', b'{"a":9007199254740992}'):
        assert not is_canonical(text, json.loads(text)), text
    for text in (b'{"a":"1.5e3 is text","b":[1,2,{"c":"x.y"}]}', b'{"a":-9007199254740991}'):
        assert is_canonical(text, json.loads(text)), text


# Any JSON value, floats included, with ASCII text that also holds the characters the byte-level check reads
# ('.', 'e', 'E', digits, quotes, backslashes), so that both its fast and its full path are exercised.
_ascii_texts = st.text(st.sampled_from(list("ae.E1-0 \"\\:,{}[]truefals")), max_size=8)
_any_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**60, 2**60), _ascii_texts, texts,
                         st.floats(allow_nan=False, allow_infinity=False),
                         st.sampled_from([MAX_SAFE_INT, MAX_SAFE_INT + 1, -MAX_SAFE_INT - 1, 1e16, 1e-7, 0.0]))
_any_values = st.recursive(_any_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(_ascii_texts, texts), inner, max_size=4)), max_leaves=20)
_spellings = st.sampled_from([
    lambda v: orjson.dumps(v, option=orjson.OPT_SORT_KEYS),  # orjson's form: canonical unless a float or big int
    lambda v: orjson.dumps(v),                               # insertion order
    lambda v: json.dumps(v, sort_keys=True, separators=(",", ":")).encode(),  # \\u escapes, other float forms
    lambda v: json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(),
])


@settings(max_examples=600, deadline=None)
@given(_any_values, _spellings)
def test_fast_payload_check_agrees_with_full_reencoding_on_any_json(value: Any, spell: Any) -> None:
    # The verifier decodes with orjson, then asks is_canonical; the answer must be the full re-encoding's.
    try:
        payload = spell(value)
        decoded = orjson.loads(payload)
    except (TypeError, ValueError):
        return  # a value this spelling cannot write, or orjson cannot read (integers beyond 64 bits)
    try:
        expected = canonical_bytes(decoded) == payload
    except CanonicalEncodingError:
        expected = False
    assert is_canonical(payload, decoded) == expected


def test_fast_payload_check_reads_structure_not_string_contents() -> None:
    for text in (b'{"a":true,"b":false,"c":null,"d":[1,-2]}', b'{"e":"1e5","f":"2.5","true":"false"}'):
        assert is_canonical(text, orjson.loads(text)), text
    for text in (b'{"a":1e5}', b'{"a":true,"b":2e-3}', b'{"a":[1.0]}', b'{"a":-0}', b'{"a":1,"a":1}'):
        assert not is_canonical(text, orjson.loads(text)), text
    deep = b"[" * 70 + b"]" * 70  # past the depth limit: the full check refuses it
    assert not is_canonical(deep, orjson.loads(deep))
    shallow = b"[" * 40 + b"1" + b"]" * 40
    assert is_canonical(shallow, orjson.loads(shallow))
