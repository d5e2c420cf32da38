"""Putting a verified restore in place atomically: a kill at any moment leaves either the old store or the
new one at the target path, never a mix and never nothing.

Linux ``renameat2(RENAME_EXCHANGE)`` swaps two names (files or directories) in one step; afterwards the old
store lies under the side name, from where it is moved to ``<target>.pre-restore-<stamp>`` (kept for the
operator, never deleted by KNHK). When the target does not exist yet, a plain ``rename`` is just as atomic.
The directory is fsynced so the new names survive a power loss.

A small journal (``<target>.knhk-restore.json``, written before the swap) records the side name and the
inode of the previous store, so :func:`tidy` can tell after a kill whether the side name still holds the
unfinished restored copy (removed) or already the previous store (kept as ``keep_as``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import shutil
from pathlib import Path

import orjson

from knhk.backup.repository import fsync_dir
from knhk.errors import ConfigurationError

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def exchange(a: Path, b: Path) -> None:
    """Atomically swap the names ``a`` and ``b`` (both must exist, on one filesystem)."""
    if not hasattr(_libc, "renameat2"):
        raise ConfigurationError("atomic restore needs renameat2 (Linux 3.15+, glibc 2.28+)")
    rc = _libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")


def put_in_place(side: Path, target: Path, keep_as: Path) -> Path | None:
    """Make ``side`` the new ``target``; the previous target (if any) ends up at ``keep_as``.

    Returns where the previous store is kept, or None when there was none.
    """
    if not target.exists() and not target.is_symlink():
        os.rename(side, target)
        fsync_dir(target.parent)
        return None
    try:
        exchange(side, target)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOSYS):
            raise ConfigurationError(f"the filesystem of {target} cannot swap names atomically") from exc
        raise
    fsync_dir(target.parent)
    os.rename(side, keep_as)
    fsync_dir(target.parent)
    return keep_as


def side_path(target: Path, backup_id: str) -> Path:
    """Where a restore of ``backup_id`` is assembled beside ``target`` (same directory, same filesystem)."""
    return target.with_name(f"{target.name}.knhk-restore-{backup_id}")


def journal_path(target: Path) -> Path:
    return target.with_name(target.name + ".knhk-restore.json")


def journaled_swap(side: Path, target: Path, keep_as: Path) -> Path | None:
    """:func:`put_in_place` with a journal that :func:`tidy` can finish from after a kill."""
    if not target.exists():
        return put_in_place(side, target, keep_as)
    journal = journal_path(target)
    record = {"side": str(side), "keep_as": str(keep_as), "target_inode": target.stat().st_ino}
    with journal.open("wb") as handle:
        handle.write(orjson.dumps(record))
        handle.flush()
        os.fsync(handle.fileno())
    fsync_dir(target.parent)
    kept = put_in_place(side, target, keep_as)
    journal.unlink()
    fsync_dir(target.parent)
    return kept


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def tidy(target: Path) -> list[str]:
    """Finish or undo what a killed restore left beside ``target``; return what was done."""
    done: list[str] = []
    if not target.parent.is_dir():
        return done
    journal = journal_path(target)
    keep: set[Path] = set()
    if journal.exists():
        try:
            record = orjson.loads(journal.read_bytes())
            side, keep_as, old_inode = Path(record["side"]), Path(record["keep_as"]), int(record["target_inode"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            side = None
        if side is not None and side.exists() and side.stat().st_ino == old_inode:
            os.rename(side, keep_as)  # the swap happened: the side name holds the previous store
            keep.add(keep_as)
            done.append(f"kept the previous store of an interrupted restore as {keep_as}")
        journal.unlink()
    for stale in target.parent.glob(f"{target.name}.knhk-restore-*"):
        if stale not in keep:
            _remove(stale)
            done.append(f"removed the unfinished restore copy {stale}")
    if done:
        fsync_dir(target.parent)
    return done
