"""The derived-result cache: L1 bounded in bytes, L2 a byte-bounded LRU keyspace in a real (private) Redis with
TTLs and tagged values, per-layer counters, and Redis faults — stopped, restarted, hung — costing answers
nothing and latency only until the breaker opens."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client import REGISTRY

from knhk.ops.cache import PREFIX, REDIS_BREAKER, TEXT, ByteLRU, DerivedCache, RedisLayer
from support.redisserver import PrivateRedis

# per-call latency bounds of a hung Redis: run alone (make test), not beside other tests
pytestmark = pytest.mark.serial

SECRET = b"s" * 32


def count(layer: str, result: str) -> float:
    return REGISTRY.get_sample_value("knhk_cache_requests_total", {"layer": layer, "result": result}) or 0.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[PrivateRedis]:
    REDIS_BREAKER.close()
    srv = PrivateRedis(tmp_path / "redis")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        REDIS_BREAKER.close()


def layer(server: PrivateRedis, max_bytes: int = 1 << 20, ttl_s: int = 60) -> RedisLayer:
    return RedisLayer.from_url(server.url, timeout_s=0.05, max_bytes=max_bytes, ttl_s=ttl_s, secret=SECRET)


def test_l1_is_bounded_in_bytes_and_keeps_the_recently_used() -> None:
    lru = ByteLRU(5_000)
    for i in range(10):
        lru.put(f"k{i}", "x" * 1000, 1000)
        lru.get("k0")  # keep k0 in use
    assert lru.bytes_used <= 5_000
    assert lru.get("k0")[0]
    assert lru.get("k9")[0]
    assert not lru.get("k1")[0]
    lru.put("huge", "y", 6_000)  # larger than the whole budget: not kept, nothing evicted for it
    assert not lru.get("huge")[0]
    assert lru.get("k9")[0]


def test_lookups_are_counted_per_layer() -> None:
    cache = DerivedCache(1 << 20)
    loads: list[int] = []
    before = (count("l1", "hit"), count("l1", "miss"), count("l3", "load"))
    for _ in range(3):
        assert cache.get("export", "abc", lambda: loads.append(1) or "text", codec=TEXT) == "text"
    assert loads == [1]
    assert (count("l1", "hit") - before[0], count("l1", "miss") - before[1], count("l3", "load") - before[2]) \
        == (2, 1, 1)


def test_l2_is_shared_bounded_lru_with_ttls(server: PrivateRedis) -> None:
    l2 = layer(server, max_bytes=10_000, ttl_s=120)
    worker_a, worker_b = DerivedCache(1 << 20, l2), DerivedCache(1 << 20, layer(server, 10_000, 120))
    assert worker_a.get("export", "s1", lambda: "turtle", codec=TEXT) == "turtle"
    hits = count("l2", "hit")
    assert worker_b.get("export", "s1", lambda: pytest.fail("L2 should have answered"), codec=TEXT) == "turtle"
    assert count("l2", "hit") == hits + 1
    client = redis.Redis.from_url(server.url)
    assert 0 < client.ttl(f"{PREFIX}export:s1") <= 120
    # fill past the budget: KNHK evicts its own least recently used entries, the total stays within it
    for i in range(30):
        l2.put(f"{PREFIX}export:big{i}", b"z" * 900)
        if i % 5 == 0:
            assert l2.get(f"{PREFIX}export:big0") is not None  # kept in use
    assert l2.bytes_held() <= 10_000
    assert l2.get(f"{PREFIX}export:big0") is not None
    assert l2.get(f"{PREFIX}export:big1") is None
    held = sum(len(client.get(k) or b"") for k in client.scan_iter(f"{PREFIX}export:*"))
    assert held <= 10_000
    assert l2.put(f"{PREFIX}export:toolarge", b"q" * 20_000) == -1
    assert client.get(f"{PREFIX}export:toolarge") is None


def test_a_value_knhk_did_not_write_is_never_served(server: PrivateRedis) -> None:
    cache = DerivedCache(1 << 20, layer(server))
    client = redis.Redis.from_url(server.url)
    client.set(f"{PREFIX}export:planted", b"\x00" * 32 + b"forged turtle")
    assert cache.get("export", "planted", lambda: "the real export", codec=TEXT) == "the real export"


def test_redis_stopped_and_restarted_answers_stay_correct(server: PrivateRedis) -> None:
    breaker = REDIS_BREAKER
    cache = DerivedCache(0, layer(server))  # no L1: every lookup asks Redis
    assert cache.get("export", "a", lambda: "A", codec=TEXT) == "A"
    server.stop()
    errors = count("l2", "error")
    for _ in range(8):
        assert cache.get("export", "a", lambda: "A", codec=TEXT) == "A"  # from the database, correct
    assert count("l2", "error") - errors == 8
    assert breaker.current_state == "open"
    server.start()
    assert cache.l2 is not None
    assert cache.l2.ping()  # a health probe: Redis answers, the breaker half-opens, the next call is its trial
    assert cache.get("export", "b", lambda: "B", codec=TEXT) == "B"
    hits = count("l2", "hit")
    assert cache.get("export", "b", lambda: pytest.fail("L2 should have answered"), codec=TEXT) == "B"
    assert count("l2", "hit") == hits + 1


def test_a_hung_redis_adds_latency_only_until_the_breaker_opens(server: PrivateRedis) -> None:
    cache = DerivedCache(0, layer(server))
    cache.get("export", "a", lambda: "A", codec=TEXT)
    server.hang()
    try:
        costs = []
        for _ in range(40):
            started = time.perf_counter()
            assert cache.get("export", "a", lambda: "A", codec=TEXT) == "A"
            costs.append(time.perf_counter() - started)
    finally:
        server.resume()
    first, rest = costs[:5], costs[5:]
    print(f"hung Redis: first 5 lookups {[round(c * 1000, 1) for c in first]} ms, "
          f"then at most {max(rest) * 1000:.2f} ms")
    assert max(first) < 0.5  # one socket timeout (50 ms) per call, a generous bound for a loaded machine
    assert max(rest) < 0.005  # the breaker is open: Redis is not called at all
    assert REDIS_BREAKER.current_state == "open"
