"""``knhk serve``: run the HTTP service with uvicorn (optionally several worker processes, TLS 1.3, mTLS)."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated

import typer

from knhk.cli.context import state
from knhk.errors import ConfigurationError


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address (env KNHK_HOST; default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (env KNHK_PORT; default 8080).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (env KNHK_WORKERS; default 1).")] = None,
) -> None:
    """Serve the API. Without a configured identity provider it binds loopback only (local dev issuer)."""
    import uvicorn

    from knhk.identity.local import check_bind_allowed
    from knhk.service.tls import uvicorn_ssl_options

    settings = state(ctx).settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    check_bind_allowed(host, settings)
    st = state(ctx)
    if st.data_dir is not None:
        os.environ["KNHK_DATA_DIR"] = str(st.data_dir)
    if st.database_url is not None:
        os.environ["KNHK_DATABASE_URL"] = st.database_url
    os.environ["KNHK_WORKERS"] = str(workers)  # each worker's share of the rate limit when Redis is away
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="knhk-metrics-")
    # Initialise (migrate, keys, packs) once before the workers start, so they never race on first use.
    from knhk.app.application import initialise

    initialise(settings)
    try:
        ssl_options = uvicorn_ssl_options(settings)
    except OSError as exc:
        raise ConfigurationError(f"cannot load the TLS certificate or key: {exc}") from exc
    uvicorn.run("knhk.service.app:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, proxy_headers=False, **ssl_options)
