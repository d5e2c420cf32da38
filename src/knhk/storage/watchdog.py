"""A client-side bound on PostgreSQL calls when the server accepts connections but never answers (SPEC §11).

``statement_timeout`` is enforced by the server and ``connect_timeout`` only covers new connections. A hung
server (SIGSTOP, a frozen VM, stuck storage) keeps its TCP connections alive in the kernel, so neither those
settings nor TCP keepalives (the kernel still acknowledges) end a call already sent to it: the caller would wait
for the whole outage.

:class:`Watchdog` does. A monitor thread watches the connections callers hold and the callers waiting for the
pool. When one begun since the server last proved alive has been busy longer than ``check_after_s`` (so a
long statement on a live server costs one probe, not one per interval) it asks the server that call is
connected to (for a pool wait: any server the URL names) whether it is alive with a
:func:`liveness` probe bounded by ``liveness_timeout_s``: a TCP connect and the 8-byte SSLRequest of the
PostgreSQL protocol, which the server answers with one byte before any authentication. A server that answers is
alive, and slow statements continue (its ``statement_timeout`` bounds them). A server that refuses or does not
answer in time is down or hung: the watchdog shuts down the socket of every held connection (their calls fail at
once with an ``OperationalError`` and the pool discards them) and calls ``on_outage`` (the database opens its
circuit breaker), so no call waits much longer than ``check_after_s + liveness_timeout_s``.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

log = logging.getLogger("knhk.storage")

#: Int32 length 8, Int32 code 80877103: the SSLRequest message (PostgreSQL protocol §55.2.10)
_SSL_REQUEST = struct.pack("!ii", 8, 80877103)


def _endpoints(url: str) -> list[tuple[str, int]]:
    """The (host, port) pairs a connection URL names (several for a multi-host URL); a host starting with ``/``
    is a Unix-socket directory."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    hosts = str(params.get("hostaddr") or params.get("host") or "localhost").split(",")
    ports = str(params.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    return [(h.strip() or "localhost", int(p or 5432)) for h, p in zip(hosts, ports, strict=False)]


def _answers(host: str, port: int, timeout_s: float) -> str | None:
    """None when the server at host:port answers an SSLRequest within ``timeout_s``; else why not."""
    try:
        if host.startswith("/"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout_s)
            sock.connect(f"{host}/.s.PGSQL.{port}")
        else:
            sock = socket.create_connection((host, port), timeout=timeout_s)
    except TimeoutError:
        return f"{host}:{port} did not accept a connection within {timeout_s:g} s"
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"
    try:
        sock.settimeout(timeout_s)
        sock.sendall(_SSL_REQUEST)
        if not sock.recv(1):
            return f"{host}:{port} closed the connection without answering"
        return None
    except TimeoutError:
        return f"{host}:{port} accepted the connection but did not answer within {timeout_s:g} s (hung)"
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"
    finally:
        sock.close()


def liveness(url: str, timeout_s: float) -> str | None:
    """None when any server the URL names answers the protocol within ``timeout_s`` (each); else why not."""
    reasons = []
    for host, port in _endpoints(url):
        reason = _answers(host, port, timeout_s)
        if reason is None:
            return None
        reasons.append(reason)
    return "; ".join(reasons)


def endpoint_of(raw: Any) -> tuple[str, int] | None:
    """The (host, port) a psycopg connection is connected to (None when unknown)."""
    try:
        info = raw.info
        host = info.hostaddr or info.host
        return (host, int(info.port)) if host else None
    except Exception:
        return None


def abort(raw: Any) -> None:
    """Shut down a psycopg connection's socket from another thread: a call blocked on it fails at once."""
    with suppress(Exception):
        fd = raw.pgconn.socket
        with socket.socket(fileno=socket.dup(fd)) as dup:  # shutdown acts on the socket, the dup is closed after
            dup.shutdown(socket.SHUT_RDWR)


class Watchdog:
    """Watches held connections and pool waiters of one database; see the module docstring."""

    def __init__(self, url: str, *, check_after_s: float, liveness_timeout_s: float,
                 on_outage: Callable[[str], None]) -> None:
        self.url = url
        self.check_after_s = check_after_s
        self.liveness_timeout_s = liveness_timeout_s
        self._on_outage = on_outage
        self._lock = threading.Lock()
        self._held: dict[int, tuple[Any, float, tuple[str, int] | None]] = {}
        self._waiting: dict[int, float] = {}
        self._aborted: set[int] = set()
        self._next = 0
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.last_probe: tuple[float, str | None] | None = None  # (monotonic time, failure reason or None)
        self.probes = 0
        self._alive_at = float("-inf")  # when the last successful probe started

    # -- registration -------------------------------------------------------------------------------------
    def _token(self) -> int:
        self._next += 1
        return self._next

    def _ensure_thread(self) -> None:
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._loop, name="knhk-db-watchdog", daemon=True)
            self._thread.start()

    @contextmanager
    def held(self, raw: Any) -> Iterator[Callable[[], bool]]:
        """Register ``raw`` as busy for the block; yields a function telling whether the watchdog aborted it."""
        with self._lock:
            token = self._token()
            self._held[token] = (raw, time.monotonic(), endpoint_of(raw))
            self._ensure_thread()
        self._wake.set()
        try:
            yield lambda: token in self._aborted
        finally:
            with self._lock:
                self._held.pop(token, None)
                self._aborted.discard(token)

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Register a caller waiting for a pool connection for the block."""
        with self._lock:
            token = self._token()
            self._waiting[token] = time.monotonic()
            self._ensure_thread()
        self._wake.set()
        try:
            yield
        finally:
            with self._lock:
                self._waiting.pop(token, None)

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    # -- the monitor --------------------------------------------------------------------------------------
    def _slow(self, now: float) -> tuple[set[tuple[str, int] | None], bool]:
        """The endpoints of held connections, and whether a pool wait, busy for ``check_after_s`` and begun since
        the server last proved alive (one begun before is slow, not a sign of a hang: a newer call shows a hang
        that starts later)."""
        limit = now - self.check_after_s
        with self._lock:
            held = {endpoint for _, since, endpoint in self._held.values() if self._alive_at < since <= limit}
            waiting = any(self._alive_at < since <= limit for since in self._waiting.values())
        return held, waiting

    def held_count(self) -> int:
        """Connections callers hold right now."""
        with self._lock:
            return len(self._held)

    def _busy(self) -> bool:
        with self._lock:
            return bool(self._held or self._waiting)

    def _probe(self, held: set[tuple[str, int] | None], waiting: bool) -> tuple[str | None, set[tuple[str, int]]]:
        """Probe the endpoints slow calls are connected to (each must answer); when there are none, for pool
        waiters or calls of an unknown endpoint, the URL's servers (any may answer). The failure reason and the
        dead endpoints; one probe's wait at most per server."""
        reasons, dead = [], set()
        known = sorted(e for e in held if e is not None)
        for endpoint in known:
            reason = _answers(endpoint[0], endpoint[1], self.liveness_timeout_s)
            if reason is not None:
                reasons.append(reason)
                dead.add(endpoint)
        if not known and (waiting or None in held):  # a server already probed answers for the pool too
            reason = liveness(self.url, self.liveness_timeout_s)
            if reason is not None:
                reasons.append(reason)
        return ("; ".join(reasons) if reasons else None), dead

    def report(self, reason: str) -> None:
        """Someone else (the health check) found the server not answering: act as on a failed probe."""
        self._outage(reason, started=time.monotonic())

    def _loop(self) -> None:
        tick = max(0.02, min(0.1, self.check_after_s / 2))
        last_probe = 0.0
        while not self._stopped:
            if not self._busy():
                self._wake.wait(self.check_after_s)
                self._wake.clear()
                continue
            now = time.monotonic()
            held, waiting = self._slow(now)
            if (held or waiting) and now - last_probe >= self.check_after_s:
                last_probe = now
                reason, dead = self._probe(held, waiting)
                self.probes += 1
                self.last_probe = (time.monotonic(), reason)
                if reason is None:
                    self._alive_at = now
                else:
                    self._outage(reason, started=now, only=dead or None)
            time.sleep(tick)

    def _outage(self, reason: str, *, started: float, only: set[tuple[str, int]] | None = None) -> None:
        """Abort the calls begun by ``started`` (only those connected to the ``only`` endpoints, when given)
        and report the outage."""
        with self._lock:
            victims = [(token, raw) for token, (raw, since, endpoint) in self._held.items()
                       if since <= started and (only is None or endpoint in only)]
            self._aborted.update(token for token, _ in victims)
            self._alive_at = float("-inf")
        log.warning("PostgreSQL is not answering (%s): aborting %d call(s) in progress", reason, len(victims),
                    extra={"dependency": "postgresql"})
        try:  # first, so the aborted callers already find the breaker open
            self._on_outage(reason)
        except Exception:
            log.exception("reporting a PostgreSQL outage failed")
        for _, raw in victims:
            abort(raw)


__all__ = ["Watchdog", "abort", "liveness"]
