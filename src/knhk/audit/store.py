"""SQL of the subject tables (``subjects``, ``subject_keys``, ``subject_erasures``): pseudonym ↔ encrypted
identity, and erasure records. No policy here: that lives in :mod:`knhk.audit.subjects`."""

from __future__ import annotations

from knhk.storage.database import Connection


def find_by_index(conn: Connection, blind_index: str) -> str | None:
    row = conn.fetchone("SELECT pseudonym FROM subjects WHERE blind_index=?", (blind_index,))
    return None if row is None else str(row[0])


def insert(conn: Connection, pseudonym: str, blind_index: str, identity_ct: bytes, key: bytes,
           created_us: int) -> bool:
    """Insert a subject unless its identity is already known (a concurrent writer won); True when inserted."""
    inserted = conn.execute(
        "INSERT INTO subjects (pseudonym, blind_index, identity_ct, created_us) VALUES (?,?,?,?)"
        " ON CONFLICT (blind_index) DO NOTHING",
        (pseudonym, blind_index, identity_ct, created_us),
    ) == 1
    if inserted:
        conn.execute("INSERT INTO subject_keys (pseudonym, key) VALUES (?,?)", (pseudonym, key))
    return inserted


def load(conn: Connection, pseudonym: str) -> tuple[bytes, bytes] | None:
    row = conn.fetchone(
        "SELECT s.identity_ct, k.key FROM subjects s JOIN subject_keys k ON k.pseudonym = s.pseudonym"
        " WHERE s.pseudonym=?",
        (pseudonym,),
    )
    return None if row is None else (bytes(row[0]), bytes(row[1]))


def erase(conn: Connection, pseudonym: str, erased_us: int) -> bool:
    exists = conn.fetchone("SELECT 1 FROM subjects WHERE pseudonym=?", (pseudonym,))
    conn.execute("DELETE FROM subject_keys WHERE pseudonym=?", (pseudonym,))
    conn.execute("DELETE FROM subjects WHERE pseudonym=?", (pseudonym,))
    conn.execute(
        "INSERT INTO subject_erasures (pseudonym, erased_us) VALUES (?,?) ON CONFLICT (pseudonym) DO NOTHING",
        (pseudonym, erased_us),
    )
    return exists is not None


def was_erased(conn: Connection, pseudonym: str) -> bool:
    return conn.fetchone("SELECT 1 FROM subject_erasures WHERE pseudonym=?", (pseudonym,)) is not None


def erased_among(conn: Connection, pseudonyms: list[str]) -> set[str]:
    """Those of ``pseudonyms`` that were erased."""
    if not pseudonyms:
        return set()
    marks = ",".join("?" * len(pseudonyms))
    rows = conn.fetchall(f"SELECT pseudonym FROM subject_erasures WHERE pseudonym IN ({marks})", pseudonyms)
    return {str(r[0]) for r in rows}
