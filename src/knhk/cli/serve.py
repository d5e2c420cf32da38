"""``knhk serve``: run the HTTP service with uvicorn (optionally several worker processes, TLS 1.3, mTLS).

Slow and idle clients are bounded (SPEC §11): a request head must arrive within ``KNHK_HTTP_HEADER_TIMEOUT_S``
(:mod:`knhk.service.connections`), a body within ``KNHK_HTTP_BODY_TIMEOUT_S`` (408), an idle keep-alive
connection is closed after ``KNHK_HTTP_KEEP_ALIVE_S``, and each worker holds at most
``KNHK_HTTP_MAX_CONNECTIONS`` connections (a request beyond them is answered 503). The process raises its
soft open-file limit towards the hard one so that budget fits.
"""

from __future__ import annotations

import os
import resource
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
    os.environ["KNHK_HTTP_HEADER_TIMEOUT_S"] = str(settings.http_header_timeout_s)  # read by each worker's protocol
    _raise_open_file_limit(settings.http_max_connections)
    uvicorn.run("knhk.service.app:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, proxy_headers=False,
                http="knhk.service.connections:BoundedHttpToolsProtocol",
                limit_concurrency=settings.http_max_connections, timeout_keep_alive=settings.http_keep_alive_s,
                **ssl_options)


def _raise_open_file_limit(connections: int) -> None:
    """Raise the soft RLIMIT_NOFILE to fit ``connections`` plus the process's own files (capped by the hard
    limit; a lower hard limit bounds the connections instead, and the kernel refuses accepts beyond it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
