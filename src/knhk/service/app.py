"""The FastAPI application (SPEC §10): ``create_app(settings)``.

One process holds one :class:`~knhk.app.application.Application` (PostgreSQL or embedded SQLite) with
role-based access, the authenticator, the rate limiter and the background scheduler. The routes are thin: each
names the operation it performs and translates HTTP to and from it. The detection windows catch up from the
database before each cycle (``subscribe_engine=False``), so any number of workers and replicas see every
observation.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI

from knhk import __version__, console
from knhk.app.access import RoleBasedAccess
from knhk.app.application import Application
from knhk.config import Settings
from knhk.identity.authenticator import build_authenticator
from knhk.ops import telemetry
from knhk.ops.telemetry import setup as telemetry_setup
from knhk.service import heap, metrics, problems, scheduler
from knhk.service.guards import RequestGuards
from knhk.service.ratelimit import RateLimiter
from knhk.service.routes import PREFIX, audit, cycles, guards, observations, patterns, proposals, receipts, snapshots
from knhk.service.routes import health as health_routes
from knhk.service.stale import StaleMarker
from knhk.service.state import ServiceState

log = logging.getLogger("knhk.service")


def create_app(settings: Settings, *, application: Application | None = None, background: bool = True,
               settle_heap: bool = False) -> FastAPI:
    """Build the HTTP face. ``application`` may be given (tests); otherwise it is opened at start-up.
    ``settle_heap``: the process serves this app for its lifetime (``app_factory``): once started, tune its
    garbage collector (:mod:`knhk.service.heap`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 200  # sync routes run in threads
        application_ = application or Application.open(
            settings, access=RoleBasedAccess(settings.auth_mfa_required_roles), subscribe_engine=False)
        try:
            auth = build_authenticator(settings, clock=application_.clock)
        except BaseException:
            if application is None:
                application_.close()
            raise
        application_.refresh_snapshots()
        limiter = RateLimiter(settings.rate_limit_per_minute, settings.redis_url, workers=settings.workers,
                              keyed=application_.rate_limit_key, timeout_s=settings.redis_timeout_s)
        st = ServiceState(settings, application_, auth, limiter, application_.ingest_audit)
        app.state.knhk = st
        console.bind(console_app, settings, application_, auth)

        def count(entries: list[Any]) -> None:
            for entry in entries:
                metrics.RECEIPTS.labels(entry.log).inc()

        application_.on_receipts(count)
        if background:
            scheduler.start(st)
        if settle_heap:
            heap.settle()
        try:
            yield
        finally:
            scheduler.stop(st)
            if application is None:
                application_.close()

    app = FastAPI(title="KNHK", version=__version__, lifespan=lifespan,
                  description="Provable, autonomic change control for a knowledge model.",
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None)
    problems.install(app)
    for module in (observations, patterns, proposals, snapshots, guards, cycles, receipts, audit):
        app.include_router(module.router)
    app.include_router(health_routes.router)
    console_app = console.create_console(settings)
    app.mount("/console", console_app)
    limits = {f"{PREFIX}/observations/batch": settings.max_batch_body_bytes}
    app.add_middleware(RequestGuards, default_limit=settings.max_body_bytes, limits=limits, forms_under="/console/",
                       body_timeout_s=settings.http_body_timeout_s)
    app.add_middleware(StaleMarker)
    telemetry.instrument_app(app)
    return app


def app_factory() -> Any:
    """Entry point for ``uvicorn --factory knhk.service.app:app_factory`` (settings from the environment)."""
    telemetry_setup.configure_from_env()
    return create_app(Settings(), settle_heap=True)
