"""The client-side bound on PostgreSQL calls (knhk.storage.watchdog): real sockets and a real private cluster.

The liveness probe tells a live server, a refused port and a port that accepts connections but never answers
apart within its timeout; a call to a hung (SIGSTOP) server is aborted within the bound and opens the breaker,
while a long statement on a live server runs to its end and costs one probe; /health's state never blocks.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from knhk.errors import CircuitOpenError, DependencyUnavailableError
from knhk.ops import resilience
from knhk.storage.database import Database
from knhk.storage.watchdog import liveness
from support.pgcluster import PrivateCluster, free_port, private_cluster

# hung-server detection time: run alone (make test), not beside other tests
pytestmark = pytest.mark.serial


def test_liveness_tells_alive_refused_and_hung_apart(pg_url: str) -> None:
    assert liveness(pg_url, 1.0) is None
    refused = liveness(f"postgresql://u@127.0.0.1:{free_port()}/x", 0.5)
    assert refused is not None
    assert "refused" in refused.lower()
    with socket.socket() as silent:  # the kernel completes the handshake into the backlog; nobody answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        hung = liveness(f"postgresql://u@127.0.0.1:{port}/x", 0.3)
        took = time.monotonic() - started
    assert hung is not None
    assert "did not answer within 0.3 s" in hung
    assert 0.25 < took < 1.0
    # a multi-host URL is alive when any of its servers answers
    host, port_ = pg_url.split("@", 1)[1].split("/", 1)[0].split(":")
    assert liveness(f"postgresql://u@127.0.0.1:{free_port()},{host}:{port_}/x", 0.5) is None
    assert liveness(f"postgresql://u@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/x", 0.5) is not None


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as found:
        yield found


def test_a_call_to_a_hung_server_is_aborted_and_opens_the_breaker(cluster: PrivateCluster) -> None:
    db = Database(cluster.url(), pool_min=1, pool_max=3, hung_check_s=0.2, liveness_timeout_s=0.3)
    try:
        with db.connection() as conn:
            assert conn.fetchone("SELECT 1") == (1,)
        cluster.hang()
        try:
            started = time.monotonic()
            with pytest.raises(DependencyUnavailableError, match="stopped answering"), db.connection() as conn:
                conn.fetchone("SELECT 1")
            aborted_after = time.monotonic() - started
            assert aborted_after < 1.5, aborted_after
            assert resilience.state_of("postgresql") == "open"
            started = time.monotonic()
            with pytest.raises(CircuitOpenError), db.connection():
                pass
            assert time.monotonic() - started < 0.05
            started = time.monotonic()
            health = db.health()
            assert health["status"] == "down"
            assert time.monotonic() - started < 0.5
        finally:
            cluster.resume()
        deadline = time.monotonic() + 10
        while True:
            try:
                with db.connection() as conn:
                    assert conn.fetchone("SELECT 1") == (1,)
                break
            except DependencyUnavailableError:
                assert time.monotonic() < deadline, "never recovered"
                time.sleep(0.1)
    finally:
        db.close()
        resilience.reset()


def test_a_long_statement_on_a_live_server_is_not_aborted(cluster: PrivateCluster) -> None:
    db = Database(cluster.url(), pool_min=1, pool_max=2, hung_check_s=0.1, liveness_timeout_s=0.5)
    try:
        with db.connection() as conn:
            conn.fetchone("SELECT pg_sleep(1.2)")
        assert db._watchdog is not None
        assert 1 <= db._watchdog.probes <= 2  # proved alive once, not once per 0.1 s
        assert resilience.state_of("postgresql") == "closed"
        assert db.health()["status"] == "up"
    finally:
        db.close()
        resilience.reset()
