"""SQL of the LLM proposer's usage rows (``llm_usage``, migration 0016): no policy, only rows.

The rate limit and the token budget that read them live in :class:`knhk.proposals.llm.StoredAllowance`.
"""

from __future__ import annotations

from knhk.storage.database import Connection


def usage_since(conn: Connection, since_us: int) -> tuple[int, int]:
    """(admitted requests, tokens reserved or spent) of the rows after ``since_us``."""
    row = conn.fetchone("SELECT COUNT(CASE WHEN kind = 'request' THEN 1 END), COALESCE(SUM(tokens), 0) "
                        "FROM llm_usage WHERE at_us > ?", (since_us,))
    return (0, 0) if row is None else (int(row[0] or 0), int(row[1] or 0))


def insert_usage(conn: Connection, at_us: int, kind: str, tokens: int) -> None:
    conn.execute("INSERT INTO llm_usage (at_us, kind, tokens) VALUES (?, ?, ?)", (at_us, kind, tokens))
