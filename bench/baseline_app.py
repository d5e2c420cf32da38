"""The baselines of the HTTP ingest benches: a minimal FastAPI app that stores the rows KNHK stores, with as
little work as an HTTP endpoint can do, so ``bench_http_batch.py`` / ``bench_http_ingest.py`` can report KNHK
as a ratio of it measured in the same run.

* ``POST /batch``: the body ``{"observations": [...]}`` parsed with orjson, one row per item with the same 14
  columns KNHK writes (UUIDv7 id, SHA-256 content hash, value JSON), stored with one ``COPY`` (binary) in one
  durable transaction.
* ``POST /one``: one row, one durable ``INSERT`` (autocommit; ``synchronous_commit`` is the server's).

A static bearer token is checked (``BASELINE_TOKEN``); the database is ``BASELINE_DATABASE_URL``; the table is
made by :func:`create_table`. Run with ``uvicorn bench.baseline_app:app --workers N``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import psycopg
import uuid_utils
from fastapi import FastAPI, HTTPException, Request, Response
from psycopg_pool import ConnectionPool

COLUMNS = ("id", "sector", "event_type", "ts_us", "received_us", "value", "metadata", "content_hash", "conforming",
           "issues", "skewed", "client_id", "ts_defaulted", "client")
DDL = """
CREATE TABLE IF NOT EXISTS baseline_observations (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id TEXT NOT NULL UNIQUE, sector TEXT NOT NULL,
    event_type TEXT NOT NULL, ts_us BIGINT NOT NULL, received_us BIGINT NOT NULL, value TEXT NOT NULL,
    metadata TEXT NOT NULL, content_hash TEXT NOT NULL, conforming BOOLEAN NOT NULL, issues TEXT NOT NULL,
    skewed BOOLEAN NOT NULL, client_id BOOLEAN NOT NULL, ts_defaulted BOOLEAN NOT NULL, client TEXT);
CREATE INDEX IF NOT EXISTS baseline_sector_ts ON baseline_observations (sector, ts_us);
CREATE INDEX IF NOT EXISTS baseline_sector_type_ts ON baseline_observations (sector, event_type, ts_us);
CREATE INDEX IF NOT EXISTS baseline_sector_seq ON baseline_observations (sector, seq);
"""
_COPY = f"COPY baseline_observations ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_TYPES = ["text", "text", "text", "int8", "int8", "text", "text", "text", "bool", "text", "bool", "bool", "bool",
          "text"]
_INSERT = (f"INSERT INTO baseline_observations ({', '.join(COLUMNS)}) VALUES "
           f"({', '.join(['%s'] * len(COLUMNS))}) RETURNING seq")


def create_table(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DDL)


def row(obs: dict[str, Any], now_us: int) -> tuple[Any, ...]:
    value = orjson.dumps(obs.get("value", {}))
    digest = hashlib.sha256(value).hexdigest()
    return (str(uuid_utils.uuid7()), obs["sector"], obs["event_type"], now_us, now_us, value.decode(), "{}", digest,
            True, "[]", False, False, True, "baseline")


_pool: ConnectionPool | None = None


@contextlib.asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    if _pool is not None:  # closed here, not by the collector from one of its own threads at exit
        _pool.close()


app = FastAPI(lifespan=_lifespan)
_TOKEN = os.environ.get("BASELINE_TOKEN", "")


def _db() -> ConnectionPool:
    global _pool
    if _pool is None:
        _pool = ConnectionPool(os.environ["BASELINE_DATABASE_URL"], min_size=2, max_size=8, open=True)
    return _pool


def _auth(request: Request) -> None:
    if request.headers.get("authorization") != f"Bearer {_TOKEN}":
        raise HTTPException(401)


@app.post("/batch", status_code=201)
async def batch(request: Request) -> Response:
    _auth(request)
    doc = orjson.loads(await request.body())
    now_us = time.time_ns() // 1000
    rows = [row(o, now_us) for o in doc["observations"]]
    with _db().connection() as conn, conn.cursor() as cur, cur.copy(_COPY) as copy:
        copy.set_types(_TYPES)
        for r in rows:
            copy.write_row(r)
    return Response(orjson.dumps({"stored": len(rows)}), status_code=201, media_type="application/json")


@app.post("/one", status_code=201)
def one(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    _auth(request)
    with _db().connection() as conn:
        seq = conn.execute(_INSERT, row(body, time.time_ns() // 1000)).fetchone()
    return {"seq": seq[0] if seq else None}
