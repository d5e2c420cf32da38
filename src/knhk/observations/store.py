"""SQL of the ``observations`` table. No policy here: validation, idempotency and conformance live in
:mod:`knhk.observations`; this module only moves rows in and out, in as few round trips as possible (SQL written
once with ``?`` parameter markers).

PHI at rest: where the connection carries a field cipher (:mod:`knhk.storage.fields`), the value fields it
names for the observation's sector are stored sealed (one token per field, bound to the observation id, sector
and field name) and opened again as rows are read; everything above this module sees plain values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from knhk.errors import ConfigurationError
from knhk.observations.model import Observation
from knhk.storage.database import Connection
from knhk.storage.fields import PREFIX as PHI_PREFIX

COLUMNS = ("seq, id, sector, event_type, ts_us, received_us, value, metadata, content_hash, conforming, issues,"
           " skewed, client_id, ts_defaulted, client")
_INSERT = (
    "INSERT INTO observations (id, sector, event_type, ts_us, received_us, value, metadata, content_hash,"
    " conforming, issues, skewed, client_id, ts_defaulted, client) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_RECORD = (
    "id text, sector text, event_type text, ts_us bigint, received_us bigint, value text, metadata text,"
    " content_hash text, conforming boolean, issues text, skewed boolean, client_id boolean,"
    " ts_defaulted boolean, client text"
)
_NAMES = tuple(c.split()[0] for c in _RECORD.split(","))
_INSERT_PG = (
    "INSERT INTO observations (id, sector, event_type, ts_us, received_us, value, metadata, content_hash,"
    " conforming, issues, skewed, client_id, ts_defaulted, client) SELECT * FROM json_to_recordset(?::json)"
    f" AS r({_RECORD}) RETURNING id, seq"
)
# PostgreSQL's path: n sequence numbers reserved in one statement (the sequence looked up once, not per row),
# then the rows with their seqs in one binary COPY (the statement trigger claims their ids, as for an INSERT)
_RESERVE_PG = ("WITH s AS MATERIALIZED (SELECT pg_get_serial_sequence('observations', 'seq')::regclass AS r)"
               " SELECT array_agg(nextval(s.r)) FROM s, generate_series(1, ?)")
_COPY_COLUMNS = ("seq", *_NAMES)
_COPY_TYPES = ("int8", "text", "text", "text", "int8", "int8", "text", "text", "text", "bool", "text", "bool",
               "bool", "bool", "text")
_IDS_PG = "(SELECT json_array_elements_text(?::json))"
_CHUNK = 500


def _aad(obs_id: str, sector: str, name: str) -> bytes:
    return f"knhk-observation-field\n{obs_id}\n{sector}\n{name}".encode()


def _month(received_us: int) -> str:
    return datetime.fromtimestamp(received_us / 1e6, UTC).strftime("%Y-%m")


def _sealed_value(conn: Connection, obs: Observation) -> bytes | None:
    """The value JSON with its PHI fields sealed (None: nothing of it is PHI)."""
    cipher = conn.fields
    phi = cipher.fields_of(obs.sector) if cipher is not None else frozenset()
    if cipher is None or not phi.intersection(obs.value):
        return None
    scope = f"{obs.sector}/{_month(obs.received_us)}"
    sealed = {name: cipher.seal(scope, orjson.dumps(v), _aad(obs.id, obs.sector, name)) if name in phi else v
              for name, v in obs.value.items()}
    return orjson.dumps(sealed)


def _opened_value(conn: Connection, obs_id: str, sector: str, value: dict[str, Any]) -> bool:
    """Open the sealed PHI fields of a stored value in place; True when there were any."""
    cipher = conn.fields
    opened = False
    for name, v in value.items():
        if isinstance(v, str) and v.startswith(PHI_PREFIX):
            if cipher is None:
                raise ConfigurationError(f"observation {obs_id} holds PHI sealed at rest, but no PHI key is loaded")
            value[name] = orjson.loads(cipher.open(v, _aad(obs_id, sector, name)))
            opened = True
    return opened


def _row(conn: Connection, obs: Observation) -> tuple[Any, ...]:
    value_json = _sealed_value(conn, obs) or obs.value_json or orjson.dumps(dict(obs.value))
    metadata = orjson.dumps(dict(obs.metadata)).decode() if obs.metadata else "{}"
    issues = orjson.dumps(list(obs.issues)).decode() if obs.issues else "[]"
    return (obs.id, obs.sector, obs.event_type, obs.ts_us, obs.received_us, value_json.decode(), metadata,
            obs.content_hash, obs.conforming, issues, obs.skewed, obs.client_id, obs.ts_defaulted, obs.client)


def _observation(conn: Connection, row: Sequence[Any]) -> Observation:
    value_text = str(row[6])
    value = orjson.loads(value_text)
    value_json = value_text.encode()
    if PHI_PREFIX in value_text and _opened_value(conn, str(row[1]), str(row[2]), value):
        value_json = orjson.dumps(value)
    return Observation(
        id=str(row[1]), sector=str(row[2]), event_type=str(row[3]), ts_us=int(row[4]),
        received_us=int(row[5]), value=value, metadata=orjson.loads(row[7]),
        content_hash=str(row[8]), conforming=bool(row[9]), issues=tuple(orjson.loads(row[10])),
        skewed=bool(row[11]), client_id=bool(row[12]), ts_defaulted=bool(row[13]),
        client=None if row[14] is None else str(row[14]), seq=int(row[0]), value_json=value_json,
    )


def observation_rows(conn: Connection, observations: Sequence[Observation]) -> list[tuple[Any, ...]]:
    """The rows :func:`insert_observations` writes (PHI fields sealed), built ahead of it: an ingest builds
    them before it takes the observations lock, so the lock covers the writes alone."""
    return [_row(conn, o) for o in observations]


def insert_observations(conn: Connection, observations: Sequence[Observation],
                        rows: Sequence[tuple[Any, ...]] | None = None) -> dict[str, int]:
    """Insert rows (the caller's transaction makes a batch all-or-nothing); return id → ingest sequence,
    ascending in input order. ``rows``: :func:`observation_rows` of ``observations``, when built already.

    SQLite: one ``executemany``. PostgreSQL: the batch's sequence numbers reserved in one statement, then one
    binary ``COPY`` of the rows with them — two round trips, nothing parsed by the server but the rows
    themselves. The caller holds the ``knhk.observations`` lock (:mod:`knhk.observations.ingest`), so the
    reserved numbers are consecutive and become visible in commit order, as the identity's own would.
    """
    if rows is None:
        rows = observation_rows(conn, observations)
    if not rows:
        return {}
    if conn.dialect == "postgresql":
        reserved = conn.fetchone(_RESERVE_PG, (len(rows),))
        seqs = sorted(int(q) for q in reserved[0]) if reserved is not None and reserved[0] is not None else []
        if len(seqs) != len(rows):
            raise RuntimeError(f"reserved {len(seqs)} ingest sequence numbers for {len(rows)} observations")
        conn.insert_rows("observations", _COPY_COLUMNS, [(q, *row) for q, row in zip(seqs, rows, strict=True)],
                         types=_COPY_TYPES)
        return {o.id: q for o, q in zip(observations, seqs, strict=True)}
    conn.executemany(_INSERT, rows)
    return seqs_of(conn, [o.id for o in observations])


def _chunks(ids: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start:start + _CHUNK])


def find_by_ids(conn: Connection, ids: Iterable[str]) -> dict[str, Observation]:
    """The stored observations among ``ids``, by id."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    if conn.dialect == "postgresql":
        rows = conn.fetchall(f"SELECT {COLUMNS} FROM observations WHERE id IN {_IDS_PG}",
                             (orjson.dumps(wanted).decode(),))
    else:
        rows = []
        for chunk in _chunks(wanted):
            marks = ",".join("?" * len(chunk))
            rows.extend(conn.fetchall(f"SELECT {COLUMNS} FROM observations WHERE id IN ({marks})", chunk))
    return {obs.id: obs for obs in (_observation(conn, r) for r in rows)}


def get_observation(conn: Connection, obs_id: str) -> Observation | None:
    row = conn.fetchone(f"SELECT {COLUMNS} FROM observations WHERE id=?", (obs_id,))
    return None if row is None else _observation(conn, row)


def seqs_of(conn: Connection, ids: Sequence[str]) -> dict[str, int]:
    """The ingest sequence numbers of stored ids."""
    if conn.dialect == "postgresql":
        rows = conn.fetchall(f"SELECT id, seq FROM observations WHERE id IN {_IDS_PG}",
                             (orjson.dumps(list(ids)).decode(),))
    else:
        rows = []
        for chunk in _chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows.extend(conn.fetchall(f"SELECT id, seq FROM observations WHERE id IN ({marks})", chunk))
    return {str(obs_id): int(seq) for obs_id, seq in rows}


def list_observations(
    conn: Connection,
    *,
    sector: str | None = None,
    event_type: str | None = None,
    since_us: int | None = None,
    until_us: int | None = None,
    after_seq: int = 0,
    limit: int = 100,
) -> list[Observation]:
    """Observations in ingest order after the cursor ``after_seq``; ``since_us`` ≤ ts_us < ``until_us``."""
    where = ["seq>?"]
    params: list[Any] = [after_seq]
    for clause, value in (("sector=?", sector), ("event_type=?", event_type), ("ts_us>=?", since_us),
                          ("ts_us<?", until_us)):
        if value is not None:
            where.append(clause)
            params.append(value)
    params.append(limit)
    rows = conn.fetchall(
        f"SELECT {COLUMNS} FROM observations WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", params
    )
    return [_observation(conn, r) for r in rows]


def recent_observations(conn: Connection, sector: str, limit: int = 1000) -> list[Observation]:
    """The ``limit`` most recently ingested observations of a sector, oldest first."""
    rows = conn.fetchall(
        f"SELECT {COLUMNS} FROM observations WHERE sector=? ORDER BY seq DESC LIMIT ?", (sector, limit)
    )
    return [_observation(conn, r) for r in reversed(rows)]


def count_observations(conn: Connection, sector: str | None = None) -> int:
    if sector is None:
        row = conn.fetchone("SELECT COUNT(*) FROM observations")
    else:
        row = conn.fetchone("SELECT COUNT(*) FROM observations WHERE sector=?", (sector,))
    return int(row[0]) if row else 0


def any_observations(conn: Connection) -> bool:
    """Does the store hold at least one observation?"""
    return conn.fetchone("SELECT 1 FROM observations LIMIT 1") is not None


def last_seq(conn: Connection, sector: str) -> int:
    """The ingest sequence number of the sector's newest observation (0: none yet)."""
    row = conn.fetchone("SELECT COALESCE(MAX(seq), 0) FROM observations WHERE sector=?", (sector,))
    return int(row[0]) if row else 0


def count_ingested_by(conn: Connection, client: str) -> int:
    """How many observations a client (pseudonym) ingested."""
    row = conn.fetchone("SELECT COUNT(*) FROM observations WHERE client=?", (client,))
    return int(row[0]) if row else 0


def find_by_seqs(conn: Connection, seqs: Sequence[int]) -> dict[int, Observation]:
    """The stored observations among the ingest sequence numbers ``seqs``, by seq (an evidence set's members)."""
    out: dict[int, Observation] = {}
    if conn.dialect == "postgresql":
        rows = conn.fetchall(f"SELECT {COLUMNS} FROM observations WHERE seq IN"
                             " (SELECT json_array_elements_text(?::json)::bigint)",
                             (orjson.dumps(list(seqs)).decode(),))
    else:
        rows = []
        for start in range(0, len(seqs), _CHUNK):
            chunk = list(seqs[start:start + _CHUNK])
            rows.extend(conn.fetchall(f"SELECT {COLUMNS} FROM observations WHERE seq IN"
                                      f" ({','.join('?' * len(chunk))})", chunk))
    for row in rows:
        obs = _observation(conn, row)
        out[int(row[0])] = obs
    return out
