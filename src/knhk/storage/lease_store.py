"""Named, expiring leases in the database: one holder at a time across every process and replica.

``acquire`` is a single conditional upsert, so two contenders can never both win: the row is taken only
when it is free, expired, or already held by the same holder (a renewal).
"""

from __future__ import annotations

from dataclasses import dataclass

from knhk.storage.database import Connection


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    expires_us: int


def acquire(conn: Connection, name: str, holder: str, now_us: int, ttl_us: int) -> bool:
    return conn.execute(
        "INSERT INTO leases (name, holder, expires_us, acquired_us) VALUES (?,?,?,?) "
        "ON CONFLICT (name) DO UPDATE SET holder=excluded.holder, expires_us=excluded.expires_us, "
        "acquired_us=excluded.acquired_us WHERE leases.expires_us <= ? OR leases.holder = excluded.holder",
        (name, holder, now_us + ttl_us, now_us, now_us)) == 1


def release(conn: Connection, name: str, holder: str) -> None:
    conn.execute("UPDATE leases SET expires_us=0 WHERE name=? AND holder=?", (name, holder))


def get(conn: Connection, name: str) -> Lease | None:
    row = conn.fetchone("SELECT name, holder, expires_us FROM leases WHERE name=?", (name,))
    return None if row is None else Lease(str(row[0]), str(row[1]), int(row[2]))
