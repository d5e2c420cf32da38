"""Backups of the embedded SQLite store.

``copy_online`` uses SQLite's online backup API in one step: the copy is one consistent snapshot of the
database (a read transaction in WAL mode) while the service keeps writing. ``restore_file`` puts a verified
copy in place of the live file with :mod:`knhk.backup.swap`, after taking the target's exclusive lock (which
fails while any other process has the store open) and recording a small journal, so a restore killed at any
moment leaves the target either untouched or fully restored (:func:`knhk.backup.swap.tidy` cleans up after).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from knhk.backup.swap import journaled_swap
from knhk.errors import ConflictError

DATA_FILE = "data.sqlite"


def copy_online(source: Path, dest: Path) -> None:
    """A consistent copy of the live database ``source`` in ``dest`` (a self-contained file, no WAL)."""
    src = sqlite3.connect(source, timeout=60)
    try:
        src.execute("PRAGMA busy_timeout=60000")
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst)  # pages=-1: every page in one step, i.e. from one read snapshot
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
    finally:
        src.close()
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(str(dest) + suffix).unlink()


def sidecars(path: Path) -> list[Path]:
    return [Path(str(path) + s) for s in ("-wal", "-shm", "-journal") if Path(str(path) + s).exists()]


@contextlib.contextmanager
def exclusive(target: Path) -> Iterator[None]:
    """Hold the target database's exclusive lock, with its WAL folded back into the main file.

    Leaving WAL mode needs every other connection gone, so this fails (ConflictError) while a service or
    another command has the store open.
    """
    conn = sqlite3.connect(target, timeout=5, isolation_level=None)
    try:
        try:
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            mode = str(conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0]).lower()
            if mode != "delete":
                raise sqlite3.OperationalError(f"journal mode stays {mode}")
            conn.execute("BEGIN EXCLUSIVE")
        except sqlite3.OperationalError as exc:
            raise ConflictError(f"the store {target} is in use by another process (stop `knhk serve` and other "
                                f"commands first): {exc}") from exc
        yield
    finally:
        conn.close()


def swap_in(side: Path, target: Path, keep_as: Path) -> Path | None:
    """Replace ``target`` by the verified ``side`` file; return where the previous store is kept."""
    if sidecars(side):
        raise ConflictError(f"the restored copy {side} still has WAL files; it was not closed cleanly")
    with side.open("rb") as handle:
        os.fsync(handle.fileno())
    if not target.exists():
        return journaled_swap(side, target, keep_as)
    with exclusive(target):
        return journaled_swap(side, target, keep_as)
