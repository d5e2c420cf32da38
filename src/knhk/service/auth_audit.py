"""Auditing failed authentication without letting a flood of bad tokens flood the audit log (SPEC §9).

Every failure is counted in the metric ``knhk_auth_failures_total{reason}`` (the reason codes of
:class:`~knhk.service.auth.oidc.BearerTokenError`: ``missing``, ``malformed``, ``bad_signature``, ``expired``, …).
The audit log gets, per client (its network address) and minute of the service clock:

- the **first** failure at once — an ``auth.failed`` entry with its reason and the resource asked for, so a
  single failed attempt is visible immediately;
- every **further** failure of that client in that minute as one aggregated ``auth.failed`` entry written when
  the minute is over (the scheduler's minute job) or the service stops: metadata ``count``, ``reasons``
  (``reason=n`` sorted), ``first_resource``, ``window_start``, ``window_s``.

So one client costs at most two audit entries a minute, however many tokens it sends; as ingest audit is
aggregated (:class:`~knhk.service.state.IngestAudit`). At most ``MAX_CLIENTS`` clients are tracked per minute;
beyond that the rest share the client ``*``.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from knhk.errors import AuthenticationError
from knhk.ops.clock import format_rfc3339
from knhk.runtime import Runtime
from knhk.service import metrics

WINDOW_S = 60
MAX_CLIENTS = 10_000
OVERFLOW_CLIENT = "*"


@dataclass
class _Window:
    first_resource: str
    count: int = 0  # failures after the first
    reasons: Counter[str] = field(default_factory=Counter)


def failure_reason(exc: AuthenticationError) -> str:
    """The reason code of a failure (a bearer-token reason, else the error's code)."""
    reason = getattr(exc, "reason", None)
    return reason if isinstance(reason, str) else exc.code


class AuthFailureAudit:
    """Counts every authentication failure; audits the first per client and minute, aggregates the rest."""

    def __init__(self, runtime: Runtime, window_s: int = WINDOW_S) -> None:
        self.runtime = runtime
        self.window_us = window_s * 1_000_000
        self._windows: dict[tuple[str, int], _Window] = {}
        self._lock = threading.Lock()

    def failed(self, client: str, resource: str, exc: AuthenticationError) -> None:
        """Record one failure of ``client`` asking for ``resource``."""
        reason = failure_reason(exc)
        metrics.AUTH_FAILURES.labels(reason).inc()
        window = self.runtime.clock.now_us() // self.window_us
        with self._lock:
            key = (client, window)
            if key not in self._windows and len(self._windows) >= MAX_CLIENTS:
                key = (OVERFLOW_CLIENT, window)
            held = self._windows.get(key)
            if held is not None:
                held.count += 1
                held.reasons[reason] += 1
                return
            self._windows[key] = _Window(resource)
        self.runtime.audit.record(f"unauthenticated@{key[0]}", "auth.failed", resource, "denied",
                                  reason=exc.message[:1000], metadata={"reason": reason})

    def flush(self, *, everything: bool = False) -> int:
        """Write the aggregated entries of the minutes that are over (or of all); return how many."""
        current = self.runtime.clock.now_us() // self.window_us
        with self._lock:
            due = {k: w for k, w in self._windows.items() if everything or k[1] < current}
            for key in due:
                del self._windows[key]
        written = 0
        for (client, window), held in sorted(due.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            if held.count == 0:
                continue
            start_us = window * self.window_us
            reasons = ",".join(f"{r}={n}" for r, n in sorted(held.reasons.items()))
            self.runtime.audit.record(
                f"unauthenticated@{client}", "auth.failed", f"client/{client}", "denied",
                reason=f"{held.count} further authentication failure(s) from {client} in the minute from "
                       f"{format_rfc3339(start_us)}",
                metadata={"count": str(held.count), "reasons": reasons, "first_resource": held.first_resource,
                          "window_start": format_rfc3339(start_us), "window_s": str(self.window_us // 1_000_000)})
            written += 1
        return written
