"""Health and metrics (unauthenticated): ``/health/live``, ``/health/ready``, ``/health``, ``/metrics``.

``live`` never touches a dependency. ``ready`` fails (503) until the store is reachable, migrations are
applied, a signing key is usable and every sector pack is installed (the last three checked until they hold
once, then only the database), and while the database is down. ``/health`` reports each dependency and
an overall status: ``unhealthy`` (503) when the database or ledger is down or the ledger failed its last
verification, ``degraded`` (200) when only optional parts (Redis) are down.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from knhk import __version__
from knhk.service import metrics, models
from knhk.service.security import state_of

router = APIRouter(tags=["health"])


@router.get("/health/live", response_model=dict[str, str])
def live() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "alive"}


def _database(request: Request) -> dict[str, Any]:
    """The database's state, never blocking for long: cached for a second, down at once while its circuit
    breaker is open, otherwise a probe bounded by ``KNHK_DB_LIVENESS_TIMEOUT_S``."""
    st = state_of(request)
    try:
        report = dict(st.app.database_health())
    except Exception as exc:
        report = {"status": "down", "error": str(exc)[:300]}
    metrics.DEPENDENCY_UP.labels("database").set(1 if report["status"] == "up" else 0)
    return {**report, "dialect": st.app.database_dialect}


@router.get("/health/ready", response_model=dict[str, Any], responses={503: {"description": "Not ready"}})
def ready(request: Request) -> Response:
    """Ready to serve: store reachable, migrations applied, signing key usable, sector packs installed."""
    st = state_of(request)
    checks: dict[str, Any] = {}
    db = _database(request)
    checks["database"] = db["status"] == "up"
    if st.installation_ready:
        # confirmed once; none of them comes undone in a running process, and each costs database reads that
        # would wait for the pool when it is exhausted: only the (bounded) database state is checked again
        checks |= {"migrations": True, "signing_key": True, "sector_packs": True}
    elif not checks["database"]:
        checks |= {"migrations": False, "signing_key": False, "sector_packs": False}
    else:
        try:
            checks["migrations"] = not st.app.migrations_pending()
        except Exception:
            checks["migrations"] = False
        try:
            checks["signing_key"] = st.app.signing_key_usable()
        except Exception:
            checks["signing_key"] = False
        try:
            checks["sector_packs"] = st.app.sector_packs_installed()
        except Exception:
            checks["sector_packs"] = False
        st.installation_ready = all(checks.values())
    ok = all(checks.values())
    body = {"status": "ready" if ok else "not_ready", "checks": checks}
    return JSONResponse(body, status_code=200 if ok else 503, headers={} if ok else {"Retry-After": "5"})


@router.get("/health", response_model=models.Health, responses={503: {"model": models.Health}})
def health(request: Request) -> Response:
    """Overall status with every dependency's state."""
    st = state_of(request)
    deps: dict[str, dict[str, Any]] = {"database": _database(request)}
    redis = st.app.redis_up()  # the L2 cache's Redis; else the shared rate limits' (the same server)
    if redis is None:
        redis = st.limiter.ping()
    deps["redis"] = {"status": "not_configured" if redis is None else ("up" if redis else "down")}
    if redis is not None:
        metrics.DEPENDENCY_UP.labels("redis").set(1 if redis else 0)
    llm = st.app.llm_status()  # optional: an open breaker degrades (cycles fall back to the rule proposer)
    deps["llm"] = llm if llm is not None else {"status": "not_configured"}
    ledger: dict[str, Any] = {"status": "up"}
    for name, report in st.verify_results.items():
        ledger[name] = {"verified": report["ok"], "tree_size": report["tree_size"],
                        "at": report["last_verified_timestamp"]}
        if not report["ok"]:
            ledger["status"] = "failed_verification"
    deps["ledger"] = ledger
    if deps["database"]["status"] != "up" or ledger["status"] != "up":
        status = "unhealthy"
    elif redis is False or deps["llm"]["status"] == "down":
        status = "degraded"
    else:
        status = "healthy"
    body = {"status": status, "version": __version__, "uptime_s": round(time.time() - st.started, 1),
            "dependencies": deps}
    return JSONResponse(body, status_code=503 if status == "unhealthy" else 200,
                        headers={"Retry-After": "10"} if status == "unhealthy" else {})


@router.get("/metrics", response_class=Response, responses={200: {"content": {metrics.CONTENT_TYPE: {}}}})
def prometheus(request: Request) -> Response:
    """Prometheus text exposition (the pool gauges read at the scrape: in-memory, never blocking)."""
    for state, n in state_of(request).app.pool_stats().items():
        metrics.POOL.labels(state).set(n)
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
