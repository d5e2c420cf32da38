"""Physical backups and point-in-time recovery of PostgreSQL with pgBackRest (a posix repository, optionally
encrypted with pgBackRest's repository cipher).

The operator owns the pgBackRest configuration (``KNHK_BACKUP_PGBACKREST_CONFIG``: repository path, cipher,
``pg1-path``/``pg1-port`` of the cluster) and points PostgreSQL's ``archive_command`` at ``pgbackrest
archive-push``. KNHK runs pgBackRest, ``pg_ctl`` and ``postgres`` as ``KNHK_BACKUP_OS_USER`` (the cluster's
owner) and:

* ``backup``: ``stanza-create`` (idempotent) and ``backup --type=full|diff|incr``; the set's label, LSN/WAL
  range, times and sizes, and the SHA-256 of pgBackRest's own ``backup.manifest`` go into the KNHK manifest;
* ``verify_set``: the set is still in the repository, its manifest unchanged, and ``pgbackrest verify``
  finds every file with its recorded checksum;
* restores (for ``verify`` into a scratch directory; for ``restore`` into a side directory beside the data
  directory): ``pgbackrest restore --set=…`` with the recovery target, then a private ``postgres`` on a free
  loopback port with ``archive_mode=off`` (a restore being checked never pushes WAL or a timeline history
  into the repository) until recovery has ended and the server is promoted;
* ``swap_in``: the side directory's new timeline history file is archived, the old server is stopped, the
  directories are exchanged atomically (:mod:`knhk.backup.swap`) and the restored cluster is started in place.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg

from knhk.backup import store
from knhk.backup.manifest import Manifest, PgBackRestSet
from knhk.backup.pgurl import url_with
from knhk.backup.swap import journaled_swap, side_path, tidy
from knhk.backup.verifier import Verification
from knhk.config import Settings
from knhk.errors import ConfigurationError, DependencyUnavailableError, IntegrityError
from knhk.proof.entry import LOGS
from knhk.storage.database import Database

DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_time(ts_us: int) -> str:
    """A recovery target time as PostgreSQL reads it (UTC, microseconds)."""
    return datetime.fromtimestamp(ts_us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def data_dir_in_use(path: Path) -> bool:
    return (path / "PG_VERSION").exists()


@dataclass
class PgBackRest:
    config: Path
    stanza: str
    os_user: str | None
    pg_bin: Path
    start_timeout_s: float = 600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> PgBackRest:
        if settings.backup_pgbackrest_config is None:
            raise ConfigurationError("PostgreSQL backups use pgBackRest: set KNHK_BACKUP_PGBACKREST_CONFIG to its "
                                     "configuration file (or use --logical for a pg_dump export)")
        if shutil.which("pgbackrest") is None:
            raise ConfigurationError("pgbackrest is not installed (Debian package pgbackrest)")
        bin_dir = settings.backup_pg_bin or DEFAULT_PG_BIN
        return cls(settings.backup_pgbackrest_config, settings.backup_stanza, settings.backup_os_user, bin_dir)

    # -- running things -------------------------------------------------------------------------------
    def _argv(self, argv: list[str]) -> list[str]:
        if self.os_user is None or pwd.getpwuid(os.geteuid()).pw_name == self.os_user:
            return argv
        return ["runuser", "-u", self.os_user, "--", *argv]

    def _exec(self, argv: list[str], what: str, timeout: float = 3600,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(self._argv(argv), capture_output=True, text=True, timeout=timeout)
        except OSError as exc:
            raise ConfigurationError(f"cannot run {argv[0]}: {exc.strerror}") from exc
        except subprocess.TimeoutExpired as exc:
            raise DependencyUnavailableError(f"{what} did not finish within {timeout:.0f} s") from exc
        if check and done.returncode != 0:
            lines = [ln for ln in (done.stderr + done.stdout).splitlines() if "ERROR" in ln or "FATAL" in ln]
            detail = lines[-1].strip() if lines else (done.stderr or done.stdout).strip()[-500:]
            raise DependencyUnavailableError(f"{what} failed: {detail}")
        return done

    def run(self, *args: str, what: str | None = None, timeout: float = 3600,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = ["pgbackrest", f"--config={self.config}", f"--stanza={self.stanza}", "--log-level-console=info",
                "--log-level-stderr=error", *args]
        return self._exec(argv, what or f"pgbackrest {args[-1]}", timeout, check)

    def _owned_dir(self, path: Path) -> None:
        path.mkdir(mode=0o700)
        if self.os_user is not None and os.geteuid() == 0:
            shutil.chown(path, self.os_user, self.os_user)

    def repo_path(self) -> Path:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.read(self.config)
        for section in (self.stanza, "global"):
            if parser.has_option(section, "repo1-path"):
                return Path(parser.get(section, "repo1-path"))
        return Path("/var/lib/pgbackrest")

    # -- backups --------------------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        done = self.run("--output=json", "info")
        doc = orjson.loads(done.stdout)
        stanzas = [s for s in doc if s.get("name") == self.stanza]
        if not stanzas:
            raise DependencyUnavailableError(f"pgBackRest knows no stanza {self.stanza}")
        info: dict[str, Any] = stanzas[0]
        return info

    def _manifest_digest(self, label: str) -> str:
        path = self.repo_path() / "backup" / self.stanza / label / "backup.manifest"
        try:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise IntegrityError(f"pgBackRest backup set {label}: cannot read its backup.manifest: {exc.strerror}") \
                from exc

    def backup(self, backup_type: str) -> PgBackRestSet:
        if backup_type not in ("full", "diff", "incr"):
            raise ConfigurationError(f"backup type must be full, diff or incr, not {backup_type!r}")
        self.run("stanza-create", what="pgbackrest stanza-create")
        self.run(f"--type={backup_type}", "backup", what=f"pgbackrest {backup_type} backup")
        sets = self.info().get("backup") or []
        if not sets:
            raise DependencyUnavailableError("pgbackrest reported success but lists no backup")
        newest = sets[-1]
        return self._set(newest)

    def _set(self, raw: dict[str, Any]) -> PgBackRestSet:
        info = self.info()
        cipher = str(info.get("cipher") or "none")
        return PgBackRestSet(
            stanza=self.stanza, label=raw["label"], type=raw["type"],
            start_us=int(raw["timestamp"]["start"]) * 1_000_000, stop_us=int(raw["timestamp"]["stop"]) * 1_000_000,
            lsn_start=raw["lsn"]["start"], lsn_stop=raw["lsn"]["stop"],
            wal_start=raw["archive"]["start"], wal_stop=raw["archive"]["stop"],
            size=int(raw["info"]["size"]), delta=int(raw["info"]["delta"]),
            repo_size=int(raw["info"]["repository"]["size"]), repo_delta=int(raw["info"]["repository"]["delta"]),
            cipher=cipher,
            manifest_sha256=self._manifest_digest(raw["label"]))

    def verify_set(self, backup_set: PgBackRestSet) -> list[str]:
        """Problems with a backup set in the repository (empty when it is intact)."""
        label = backup_set.label
        labels = [b["label"] for b in self.info().get("backup") or []]
        if label not in labels:
            return [f"pgBackRest backup set {label} is no longer in the repository (expired or removed)"]
        try:
            digest = self._manifest_digest(label)
        except IntegrityError as exc:
            return [exc.message]
        if digest != backup_set.manifest_sha256:
            return [f"pgBackRest backup set {label}: its backup.manifest was changed after the backup"]
        done = self.run(f"--set={label}", "verify", what="pgbackrest verify", check=False)
        text = done.stdout + done.stderr
        problems = []
        for line in text.splitlines():
            low = line.lower()
            if ("invalid" in low or "missing" in low) and "'" in line and "INFO:" in line:
                problems.append(f"pgBackRest backup set {label}: {line.split('INFO:', 1)[1].strip()}")
        if done.returncode != 0:
            problems.append(f"pgbackrest verify failed: {text.strip().splitlines()[-1] if text.strip() else ''}")
        elif not problems and "status: error" in text:
            problems.append(f"pgBackRest backup set {label}: pgbackrest verify reports errors")
        return problems

    def archive_current_wal(self) -> None:
        """Have the running server switch WAL and wait until the segment is in the repository."""
        self.run("--archive-timeout=120", "check", what="pgbackrest check (archiving the current WAL)")

    # -- restores -------------------------------------------------------------------------------------
    def restore_into(self, directory: Path, backup_set: PgBackRestSet, target: list[str]) -> None:
        self.run(f"--pg1-path={directory}", f"--set={backup_set.label}", *target, "restore",
                 what=f"pgbackrest restore of set {backup_set.label}")

    def restore_side(self, manifest: Manifest, pg_data: Path, target_us: int | None) -> Path:
        assert manifest.pgbackrest is not None
        tidy(pg_data)
        side = side_path(pg_data, manifest.id)
        self._owned_dir(side)
        target = ["--type=time", f"--target={pg_time(target_us)}", "--target-action=promote"] if target_us else []
        try:
            self.restore_into(side, manifest.pgbackrest, target)
        except BaseException:
            shutil.rmtree(side, ignore_errors=True)
            raise
        return side

    def pg_ctl(self, data: Path, *args: str, what: str, check: bool = True,
               timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self._exec([str(self.pg_bin / "pg_ctl"), "-D", str(data), *args], what, timeout=timeout, check=check)

    @contextlib.contextmanager
    def start_side(self, data: Path, url: str) -> Iterator[str]:
        """Run the restored cluster in ``data`` privately until it has finished recovery; yield its URL.

        A clean shutdown follows a normal exit (the directory can then be swapped in); an exception stops it
        immediately.
        """
        port = _free_port()
        sock = Path(tempfile.mkdtemp(prefix="knhk-sock-"))
        if self.os_user is not None and os.geteuid() == 0:
            shutil.chown(sock, self.os_user, self.os_user)
        logfile = data.with_name(data.name + ".log")
        options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sock} "
                   "-c archive_mode=off -c hot_standby=on")
        started = self.pg_ctl(data, "-l", str(logfile), "-w", "-t", str(int(self.start_timeout_s)), "-o", options,
                              "start", what="starting the restored cluster", check=False,
                              timeout=self.start_timeout_s + 30)
        scratch_url = url_with(url, host="127.0.0.1", port=str(port), hostaddr=None, target_session_attrs=None)
        ok = False
        try:
            if started.returncode != 0:
                raise IntegrityError(f"the restored cluster did not start: {_log_reason(logfile)}")
            self._wait_promoted(scratch_url, logfile)
            yield scratch_url
            ok = True
        finally:
            self.pg_ctl(data, "-m", "fast" if ok else "immediate", "-w", "stop", what="stopping the restored cluster",
                        check=False)
            shutil.rmtree(sock, ignore_errors=True)
            with contextlib.suppress(OSError):
                logfile.unlink()

    def _wait_promoted(self, url: str, logfile: Path) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                with psycopg.connect(url, connect_timeout=5) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row is not None and not row[0]:
                    return
            except psycopg.OperationalError as exc:
                reason = _log_reason(logfile)
                if "FATAL" in reason or time.monotonic() > deadline:
                    raise IntegrityError(f"recovery of the restored cluster failed: {reason or exc}") from exc
            if time.monotonic() > deadline:
                raise IntegrityError("the restored cluster did not finish recovery in time")
            time.sleep(0.2)

    @contextlib.contextmanager
    def scratch_cluster(self, manifest: Manifest, scratch: Path, url: str) -> Iterator[str]:
        """The backup set restored to its consistent point in a throw-away directory, running privately."""
        assert manifest.pgbackrest is not None
        if self.os_user is not None and os.geteuid() == 0:
            shutil.chown(scratch, self.os_user, self.os_user)
        data = scratch / "data"
        self._owned_dir(data)
        self.restore_into(data, manifest.pgbackrest, ["--type=immediate", "--target-action=promote"])
        with self.start_side(data, url) as scratch_url:
            yield scratch_url

    def swap_in(self, side: Path, pg_data: Path, keep_as: Path) -> Path | None:
        """Archive the side cluster's new timeline, stop the old server, exchange the directories."""
        histories = sorted((side / "pg_wal").glob("*.history"))
        if histories:
            self.run(f"--pg1-path={side}", "archive-push", str(histories[-1]),
                     what="archiving the restored cluster's timeline history")
        if data_dir_in_use(pg_data) and (pg_data / "postmaster.pid").exists():
            self.pg_ctl(pg_data, "-m", "fast", "-w", "stop", what="stopping the old server", check=False)
            if (pg_data / "postmaster.pid").exists():
                raise DependencyUnavailableError(f"the server on {pg_data} did not stop; nothing was swapped")
        return journaled_swap(side, pg_data, keep_as)

    def start_in_place(self, pg_data: Path, url: str, verified: Verification) -> None:
        """Start the swapped-in cluster and check it is exactly the state that was verified."""
        logfile = pg_data.with_name(pg_data.name + ".restored.log")
        self.pg_ctl(pg_data, "-l", str(logfile), "-w", "-t", str(int(self.start_timeout_s)), "start",
                    what="starting the restored cluster in place", timeout=self.start_timeout_s + 30)
        deadline = time.monotonic() + 60
        while True:
            try:
                db = Database(url, pool_min=1, pool_max=1)
                break
            except DependencyUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            with db.snapshot() as conn:
                state = store.read_state(conn)
        finally:
            db.close()
        restored = verified.restored
        assert restored is not None
        for log in LOGS:
            if log in restored.logs and state.logs.get(log) != restored.logs[log]:
                raise IntegrityError(f"log {log}: the cluster started in place differs from the verified restore")


def _log_reason(logfile: Path) -> str:
    try:
        lines = logfile.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    bad = [ln for ln in lines if "FATAL" in ln or "PANIC" in ln]
    return bad[-1].strip() if bad else (lines[-1].strip() if lines else "")
