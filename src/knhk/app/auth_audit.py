"""Auditing failed authentication without letting a flood of bad tokens flood the audit log (SPEC §9).

The face counts every failure (the service: ``knhk_auth_failures_total{reason}``, the reason codes of
:class:`~knhk.identity.oidc.BearerTokenError`: ``missing``, ``malformed``, ``bad_signature``, ``expired``, …).
The audit log gets, per client (its network address) and minute of the installation's clock:

- the **first** failure at once — an ``auth.failed`` entry with its reason and the resource asked for, so a
  single failed attempt is visible immediately;
- every **further** failure of that client in that minute as one aggregated ``auth.failed`` entry written when
  the minute is over (the service scheduler's minute job) or the application closes: metadata ``count``,
  ``reasons`` (``reason=n`` sorted), ``first_resource``, ``window_start``, ``window_s``.

So one client costs at most two audit entries a minute, however many tokens it sends — as ingest audit is
aggregated (:class:`~knhk.app.observations.IngestAudit`). At most ``MAX_CLIENTS`` clients are tracked per
minute; beyond that the rest share the client ``*``.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from knhk.audit.log import AuditLog
from knhk.ops.clock import Clock, format_rfc3339

WINDOW_S = 60
MAX_CLIENTS = 10_000
OVERFLOW_CLIENT = "*"


@dataclass
class _Window:
    first_resource: str
    count: int = 0  # failures after the first
    reasons: Counter[str] = field(default_factory=Counter)


class AuthFailureAudit:
    """Audits the first authentication failure per client and minute at once, aggregates the rest."""

    def __init__(self, audit: AuditLog, clock: Clock, window_s: int = WINDOW_S) -> None:
        self.audit = audit
        self.clock = clock
        self.window_us = window_s * 1_000_000
        self._windows: dict[tuple[str, int], _Window] = {}
        self._lock = threading.Lock()

    def failed(self, who: str, resource: str, message: str, reason: str) -> None:
        """Record one failure of ``who`` (e.g. ``unauthenticated@<address>``) asking for ``resource``."""
        window = self.clock.now_us() // self.window_us
        with self._lock:
            key = (who, window)
            if key not in self._windows and len(self._windows) >= MAX_CLIENTS:
                key = (f"unauthenticated@{OVERFLOW_CLIENT}", window)
            held = self._windows.get(key)
            if held is not None:
                held.count += 1
                held.reasons[reason] += 1
                return
            self._windows[key] = _Window(resource)
        self.audit.record(key[0], "auth.failed", resource, "denied", reason=message[:1000],
                          metadata={"reason": reason})

    def flush(self, *, everything: bool = False) -> int:
        """Write the aggregated entries of the minutes that are over (or of all); return how many."""
        current = self.clock.now_us() // self.window_us
        with self._lock:
            due = {k: w for k, w in self._windows.items() if everything or k[1] < current}
            for key in due:
                del self._windows[key]
        written = 0
        for (who, window), held in sorted(due.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if held.count == 0:
                continue
            start_us = window * self.window_us
            reasons = ",".join(f"{r}={n}" for r, n in sorted(held.reasons.items()))
            self.audit.record(
                who, "auth.failed", f"client/{who}", "denied",
                reason=f"{held.count} further authentication failure(s) from {who} in the minute from "
                       f"{format_rfc3339(start_us)}",
                metadata={"count": str(held.count), "reasons": reasons, "first_resource": held.first_resource,
                          "window_start": format_rfc3339(start_us), "window_s": str(self.window_us // 1_000_000)})
            written += 1
        return written


def failure_reason(exc: Exception) -> str:
    """The reason code of an authentication failure (a bearer-token reason, else the error's code)."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str):
        return reason
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else "unauthenticated"
