"""The service's per-process state: the application, the authenticator, rate limits, the scheduler."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from knhk.app.application import Application
from knhk.app.observations import IngestAudit
from knhk.config import Settings
from knhk.identity.oidc import Authenticator
from knhk.service.ratelimit import RateLimiter

log = logging.getLogger("knhk.service")


@dataclass
class ServiceState:
    settings: Settings
    app: Application
    auth: Authenticator
    limiter: RateLimiter
    ingest_audit: IngestAudit  # the application's, flushed by the scheduler's minute job
    started: float = field(default_factory=time.time)
    verify_results: dict[str, dict[str, Any]] = field(default_factory=dict)
    installation_ready: bool = False  # /health/ready saw migrations, signing key and sector packs in place
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
