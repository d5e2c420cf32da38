"""Slow and idle clients against a real `knhk serve` over real sockets (issue 9, "Exhaustion and slow clients"):
a body sent a byte at a time is cut off with 408 at the body deadline while other clients are answered; 2,000
idle connections (silent, half a request head, kept alive after an answer) do not stop a normal client, are
closed by the head deadline or the keep-alive timeout, and the connection limit answers 503 beyond itself."""

from __future__ import annotations

import resource
import selectors
import socket
import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from support.serve import serve

# header and body deadlines: run alone (make test), not beside other tests
pytestmark = pytest.mark.serial

HEAD_S, BODY_S, KEEP_ALIVE_S, MAX_CONNECTIONS = 3.0, 1.0, 1, 2100
IDLE = 2000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("slow")
    env = {"KNHK_DATA_DIR": str(root / "data"), "KNHK_DATABASE_URL": f"sqlite:///{root / 'knhk.db'}",
           "KNHK_HTTP_HEADER_TIMEOUT_S": str(HEAD_S), "KNHK_HTTP_BODY_TIMEOUT_S": str(BODY_S),
           "KNHK_HTTP_KEEP_ALIVE_S": str(KEEP_ALIVE_S), "KNHK_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS)}
    with serve(env) as (url, _):
        yield url


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when that was (seconds from now)."""
    started = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


class Prober:
    """A normal client asking /health/live every 50 ms from another thread; every answer's status and time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.times: list[float] = []
        self.statuses: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                started = time.perf_counter()
                self.statuses.append(client.get("/health/live").status_code)
                self.times.append(time.perf_counter() - started)
                time.sleep(0.05)

    def __enter__(self) -> Prober:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_a_slow_body_is_cut_off_at_the_deadline_while_others_are_answered(server: str) -> None:
    head = (b"POST /api/v1/observations/batch HTTP/1.1\r\nHost: knhk\r\ncontent-type: application/json\r\n"
            b"content-length: 4000\r\n\r\n")
    sock = socket.create_connection(_address(server))
    sent = threading.Event()

    def trickle() -> None:  # one byte every 50 ms: the body would take 200 s
        try:
            sock.sendall(head)
            sent.set()
            for _ in range(4000):
                sock.sendall(b" ")
                time.sleep(0.05)
        except OSError:
            return  # the server closed the connection

    with Prober(server) as prober:
        writer = threading.Thread(target=trickle)
        writer.start()
        assert sent.wait(10)
        answer, cut_after = _read_until_closed(sock, timeout=60)
        writer.join(30)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"body_timeout" in answer
    assert b"connection: close" in answer.lower()
    assert cut_after < BODY_S + 10  # the deadline (1 s) and scheduling slack on a loaded box, not 200 s
    assert prober.statuses
    assert set(prober.statuses) == {200}
    print(f"\nslow body: 408 and closed {cut_after:.2f} s after the head (deadline {BODY_S} s); meanwhile "
          f"{len(prober.times)} other requests answered 200, slowest {max(prober.times) * 1000:.0f} ms")


def _open_idle(address: tuple[str, int], n: int) -> list[socket.socket]:
    """``n`` idle connections: most say nothing, every 10th sends half a request head."""
    socks = []
    for i in range(n):
        sock = socket.create_connection(address, timeout=10)
        if i % 10 == 0:
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: knhk\r\n")
        socks.append(sock)
    return socks


def _wait_closed(socks: list[socket.socket], timeout: float) -> tuple[int, float, int]:
    """Wait until the server closed every socket: (closed, monotonic time of the last close, answered 408)."""
    started = last = time.monotonic()
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    open_, timed_out = len(socks), 0
    while open_ and time.monotonic() - started < timeout:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(65536)
            except (BlockingIOError, ConnectionResetError):
                chunk = b""
            if chunk.startswith(b"HTTP/1.1 408"):
                timed_out += 1
            if not chunk or (b"\r\n\r\n" in chunk and b"connection: close" in chunk.lower()):
                selector.unregister(sock)
                open_ -= 1
                last = time.monotonic()
    selector.close()
    return len(socks) - open_, last, timed_out


def test_two_thousand_idle_connections_are_bounded(server: str) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = IDLE + MAX_CONNECTIONS + 500
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))
        assert hard == resource.RLIM_INFINITY or hard >= needed, f"the hard open-file limit {hard} is below {needed}"
    address = _address(server)
    kept = []
    for _ in range(20):  # connections kept alive after one answer
        sock = socket.create_connection(address, timeout=10)
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: knhk\r\n\r\n")
        kept.append(sock)
    opened = time.monotonic()
    idle = _open_idle(address, IDLE)
    last_opened = time.monotonic()
    open_s = last_opened - opened
    try:
        with Prober(server) as prober:
            time.sleep(2.0)
        assert prober.statuses
        assert set(prober.statuses) == {200}, prober.statuses
        closed, last_closed, answered_408 = _wait_closed(idle + kept, timeout=HEAD_S + 30)
        took = last_closed - last_opened
        still = IDLE + len(kept) - closed
        assert not still, f"{still} idle connection(s) still open {took:.1f} s after the last opened"
        assert answered_408 == IDLE // 10  # those that had sent half a head were told why
        # Over the connection limit a request is refused at once, not queued behind the idle ones.
        flood = _open_idle(address, MAX_CONNECTIONS)
        try:
            with httpx.Client(base_url=server, timeout=10) as client:
                assert client.get("/health/live").status_code == 503
        finally:
            for sock in flood:
                sock.close()
    finally:
        for sock in idle + kept:
            sock.close()
    print(f"\n{IDLE} idle connections (opened in {open_s:.2f} s) + {len(kept)} kept alive: {len(prober.times)} "
          f"requests of another client meanwhile all 200, median {statistics.median(prober.times) * 1000:.1f} ms, "
          f"slowest {max(prober.times) * 1000:.0f} ms; all closed by the server {took:.2f} s after the last one "
          f"opened (head deadline {HEAD_S} s), {answered_408} with 408; beyond {MAX_CONNECTIONS} connections: 503")


def test_the_deadlines_are_counted(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        text = client.get("/metrics").text
    assert 'knhk_http_timeouts_total{phase="head"}' in text
    assert 'knhk_http_timeouts_total{phase="body"}' in text


def test_a_fast_body_is_not_affected(server: str) -> None:
    with httpx.Client(base_url=server, timeout=10) as client:
        answer = client.post("/api/v1/observations/batch", json={"observations": []})
    assert answer.status_code == 401  # read in time, then refused for what it is (no token), not 408
