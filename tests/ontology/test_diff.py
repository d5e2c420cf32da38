"""Diff of two triple sets."""

from __future__ import annotations

from knhk.ontology.diff import diff

A = ("<https://e.org/a>", "<https://e.org/p>", '"1"')
B = ("<https://e.org/b>", "<https://e.org/p>", '"2"')
C = ("<https://e.org/c>", "<https://e.org/p>", '"3"')


def test_added_and_removed_sorted() -> None:
    result = diff([C, A], [*[B, A, C][::-1], ("<https://e.org/0>", "<https://e.org/p>", '"0"')])
    assert result.removed == ()
    assert result.added == (("<https://e.org/0>", "<https://e.org/p>", '"0"'), B)
    result = diff({A, B, C}, {A})
    assert result.removed == (B, C)
    assert result.added == ()
    assert not result.empty
    assert diff({A}, {A}).empty


def test_text_and_json() -> None:
    result = diff({A}, {B})
    assert result.to_text() == f"- {' '.join(A)} .\n+ {' '.join(B)} .\n"
    assert result.to_json()["added"] == [list(B)]
