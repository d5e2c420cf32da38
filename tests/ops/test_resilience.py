"""Circuit breakers and retries (knhk.ops.resilience) against a real failing dependency: a TCP port on loopback
that refuses connections until the test starts listening on it."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest

from knhk.errors import CircuitOpenError, DependencyUnavailableError
from knhk.ops import resilience
from knhk.ops.resilience import Breaker, BreakerPolicy, RetryPolicy
from knhk.ops.telemetry.metrics import BREAKER_STATE, RETRIES, render
from support.pgcluster import free_port


class Dependency:
    """A real dependency: ``call()`` opens a TCP connection to a loopback port (refused while nobody listens)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls = 0
        self._server: socket.socket | None = None

    def call(self) -> str:
        self.calls += 1
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return "answered"

    @contextmanager
    def up(self) -> Iterator[None]:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        try:
            yield
        finally:
            server.close()


def _state(name: str) -> float:
    return float(BREAKER_STATE.labels(name)._value.get())


def _fail(breaker: Breaker, dep: Dependency, times: int) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionRefusedError):
            breaker.run(dep.call)


def test_opens_after_five_consecutive_failures_and_refuses_without_calling(caplog: pytest.LogCaptureFixture) -> None:
    dep = Dependency()
    breaker = Breaker("test-open", BreakerPolicy())  # the SPEC numbers: 5 failures, 30 s, 3 trials
    caplog.set_level(logging.INFO, logger="knhk.resilience")
    _fail(breaker, dep, 4)
    assert breaker.current_state == "closed"
    with dep.up():
        assert breaker.run(dep.call) == "answered"  # a success resets the count: failures must be consecutive
    _fail(breaker, dep, 5)
    assert breaker.current_state == "open"
    assert _state("test-open") == 1
    calls = dep.calls
    started = time.perf_counter()
    with pytest.raises(CircuitOpenError) as refused:
        breaker.run(dep.call)
    assert time.perf_counter() - started < 0.05
    assert dep.calls == calls  # refused without trying
    assert refused.value.http_status == 503
    assert 25 <= refused.value.retry_after <= 30
    assert isinstance(refused.value, DependencyUnavailableError)
    assert "circuit breaker test-open: closed -> open" in caplog.text
    assert 'knhk_circuit_breaker_state{dependency="test-open"} 1.0' in render().decode()


def test_half_open_lets_three_trials_through_and_closes_when_they_succeed() -> None:
    dep = Dependency()
    breaker = Breaker("test-half-open", BreakerPolicy(fail_max=5, open_s=0.3, half_open_trials=3))
    _fail(breaker, dep, 5)
    time.sleep(0.35)
    with dep.up():
        with ExitStack() as trials:
            for _ in range(3):  # three concurrent trial calls are let through ...
                trials.enter_context(breaker.guard())
                dep.call()
            with pytest.raises(CircuitOpenError) as busy:  # ... and no fourth while they run
                trials.enter_context(breaker.guard())
            assert busy.value.retry_after == 1
        assert breaker.current_state == "closed"
        assert _state("test-half-open") == 0
        assert breaker.run(dep.call) == "answered"


def test_a_failed_trial_opens_the_breaker_again() -> None:
    dep = Dependency()
    breaker = Breaker("test-reopen", BreakerPolicy(fail_max=5, open_s=0.3, half_open_trials=3))
    _fail(breaker, dep, 5)
    time.sleep(0.35)
    with dep.up():
        breaker.run(dep.call)  # one trial succeeds
    assert breaker.current_state == "half-open"
    assert _state("test-reopen") == 2
    _fail(breaker, dep, 1)  # the next fails
    assert breaker.current_state == "open"
    with pytest.raises(CircuitOpenError):
        breaker.run(dep.call)


def test_errors_that_are_not_the_dependencys_do_not_count() -> None:
    breaker = Breaker("test-business", BreakerPolicy(fail_max=2))

    def bad_input() -> None:
        raise ValueError("the caller's mistake")

    for _ in range(5):
        with pytest.raises(ValueError, match="caller"):
            breaker.run(bad_input)
    assert breaker.current_state == "closed"


def test_a_probe_ends_the_open_period_as_soon_as_the_dependency_answers() -> None:
    dep = Dependency()
    breaker = Breaker("test-probe", BreakerPolicy(fail_max=5, open_s=30, half_open_trials=3, probe_every_s=0.1))
    breaker.recover_with(dep.call)
    _fail(breaker, dep, 5)
    time.sleep(0.3)
    assert breaker.current_state == "open"  # probing, still refused
    with dep.up():
        deadline = time.monotonic() + 5
        while breaker.current_state == "open" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert breaker.current_state == "half-open"
        for _ in range(3):
            breaker.run(dep.call)
    assert breaker.current_state == "closed"


def test_guarded_blocks_run_concurrently() -> None:
    """pybreaker's own call() holds the breaker's lock while the call runs; guard() must not."""
    breaker = Breaker("test-concurrent", BreakerPolicy())
    both_inside = threading.Barrier(2, timeout=5)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with breaker.guard():
                both_inside.wait()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not errors


def test_breaker_for_is_one_breaker_per_dependency() -> None:
    assert resilience.breaker_for("test-shared") is resilience.breaker_for("test-shared")
    assert resilience.breaker_for("test-shared") is not resilience.breaker_for("test-other")
    assert resilience.state_of("test-shared") == "closed"
    assert resilience.state_of("never-made") is None


@pytest.fixture
def quick_retries() -> Iterator[None]:
    resilience.configure(retries=RetryPolicy(attempts=5, base_s=0.01, multiplier=2.0, cap_s=1.0, jitter=0.25))
    try:
        yield
    finally:
        resilience.configure(retries=RetryPolicy())


def test_idempotent_retry_retries_transient_failures_and_counts_them(quick_retries: None) -> None:
    dep = Dependency()

    @resilience.idempotent_retry("test.read")
    def read() -> str:
        if dep.calls == 2:
            with dep.up():
                return dep.call()
        return dep.call()

    before = RETRIES.labels("test.read")._value.get()
    assert read() == "answered"
    assert dep.calls == 3
    assert RETRIES.labels("test.read")._value.get() == before + 2
    assert 'knhk_retries_total{operation="test.read"}' in render().decode()


def test_idempotent_retry_gives_up_after_five_attempts_with_the_last_error(quick_retries: None) -> None:
    dep = Dependency()
    reader = resilience.idempotent_retry("test.down")(dep.call)
    with pytest.raises(ConnectionRefusedError):
        reader()
    assert dep.calls == 5


def test_idempotent_retry_never_retries_bad_input_or_an_open_breaker(quick_retries: None) -> None:
    calls: list[str] = []

    @resilience.idempotent_retry("test.refused")
    def refused(kind: str) -> None:
        calls.append(kind)
        if kind == "input":
            raise ValueError("bad input")
        raise CircuitOpenError("open", retry_after=3)

    with pytest.raises(ValueError, match="bad input"):
        refused("input")
    with pytest.raises(CircuitOpenError):
        refused("open")
    assert calls == ["input", "open"]


def test_retry_waits_follow_the_spec() -> None:
    spec = RetryPolicy()  # 100 ms base, ×2, 30 s cap, ±25 % jitter
    for attempt in range(1, 12):
        nominal = min(30.0, 0.1 * 2 ** (attempt - 1))
        waits = [resilience.retry_wait(spec, attempt) for _ in range(200)]
        assert all(nominal * 0.75 <= w <= min(30.0, nominal * 1.25) for w in waits)
        assert max(waits) - min(waits) > nominal * 0.1 or nominal == 30.0  # jittered, not constant
