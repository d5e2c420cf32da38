"""Circuit breakers and retries for KNHK's dependencies (SPEC §11).

One breaker per dependency name (``postgresql``, ``redis``, ``oidc:<issuer>``, ``llm``), shared by every
caller in the process: :func:`breaker_for`. It opens after 5 consecutive failures, refuses calls for 30 s
(:class:`~knhk.errors.CircuitOpenError`, a 503 with ``Retry-After``), then lets 3 trial calls through
(half-open) and closes when all 3 succeed; one failed trial opens it again. The numbers come from the
settings (``KNHK_BREAKER_*``, applied by :func:`configure`). Transitions are logged (``knhk.resilience``) and
exported as ``knhk_circuit_breaker_state{dependency}`` (0 closed, 1 open, 2 half-open).

The breakers are pybreaker's (:class:`pybreaker.CircuitBreaker`): the code base is synchronous (threads),
pybreaker is maintained, and its listeners see every state change. pybreaker holds the breaker's lock for
the whole of a guarded call, which would serialise every database call of the process; :meth:`Breaker.guard`
therefore runs the block outside the lock and hands only its outcome to pybreaker's state machine.

A dependency may register a *probe* (:meth:`Breaker.recover_with`): while the breaker is open, the probe runs
once per interval; when it succeeds the breaker goes half-open at once instead of waiting out the 30 s, so a
service recovers within seconds of its dependency returning.

:func:`idempotent_retry` retries an idempotent operation on transient dependency failures (tenacity: 5
attempts, 100 ms base, ×2, 30 s cap, ±25 % jitter; ``KNHK_RETRY_*``), counting ``knhk_retries_total``. It
never retries a refusal of an open breaker, and never wraps an operation that must not run twice.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import ParamSpec, TypeVar

import pybreaker
import tenacity

from knhk.errors import CircuitOpenError, DependencyUnavailableError
from knhk.ops.telemetry.metrics import BREAKER_STATE, RETRIES

log = logging.getLogger("knhk.resilience")

P = ParamSpec("P")
T = TypeVar("T")

STATE_VALUES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_OPEN: 1, pybreaker.STATE_HALF_OPEN: 2}


@dataclass(frozen=True)
class BreakerPolicy:
    """When a breaker opens and how it closes again (SPEC §11 defaults)."""

    fail_max: int = 5
    open_s: float = 30.0
    half_open_trials: int = 3
    probe_every_s: float = 0.5


@dataclass(frozen=True)
class RetryPolicy:
    """How idempotent operations are retried (SPEC §11 defaults)."""

    attempts: int = 5
    base_s: float = 0.1
    multiplier: float = 2.0
    cap_s: float = 30.0
    jitter: float = 0.25


def is_dependency_failure(exc: BaseException) -> bool:
    """Whether an exception says the dependency failed (not the caller's input, not an open breaker)."""
    if isinstance(exc, CircuitOpenError):
        return False
    return isinstance(exc, DependencyUnavailableError | ConnectionError | TimeoutError)


class _Transitions(pybreaker.CircuitBreakerListener):
    """Logs each state change and exports it as ``knhk_circuit_breaker_state``."""

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: pybreaker.CircuitBreakerState | None,
                     new_state: pybreaker.CircuitBreakerState) -> None:
        old = old_state.name if old_state is not None else "none"
        BREAKER_STATE.labels(cb.name).set(STATE_VALUES[new_state.name])
        level = logging.WARNING if new_state.name == pybreaker.STATE_OPEN else logging.INFO
        log.log(level, "circuit breaker %s: %s -> %s", cb.name, old, new_state.name,
                extra={"dependency": cb.name, "breaker_from": old, "breaker_to": new_state.name})
        if isinstance(cb, Breaker) and new_state.name == pybreaker.STATE_OPEN:
            cb._start_probe()


def _replay(exc: BaseException | None) -> None:
    if exc is not None:
        raise exc


class Breaker(pybreaker.CircuitBreaker):
    """A pybreaker breaker whose guarded blocks run concurrently (see the module docstring)."""

    def __init__(self, dependency: str, policy: BreakerPolicy) -> None:
        super().__init__(fail_max=policy.fail_max, reset_timeout=policy.open_s,
                         success_threshold=policy.half_open_trials, name=dependency,
                         listeners=[_Transitions()], throw_new_error_on_trip=False)
        self.dependency = dependency
        self._trials = 0
        self._trial_lock = threading.Lock()
        self._probe: Callable[[], object] | None = None
        self._probe_every_s = policy.probe_every_s
        self._probing = False
        BREAKER_STATE.labels(dependency).set(0)

    def apply(self, policy: BreakerPolicy) -> None:
        self.fail_max = policy.fail_max
        self.reset_timeout = policy.open_s
        self.success_threshold = policy.half_open_trials
        self._probe_every_s = policy.probe_every_s

    # -- admission ----------------------------------------------------------------------------------
    def retry_after_s(self) -> int:
        """Whole seconds until the breaker lets a trial through (at least 1)."""
        opened = self._state_storage.opened_at
        if self.current_state != pybreaker.STATE_OPEN or opened is None:
            return 1
        left = (opened + timedelta(seconds=self.reset_timeout) - datetime.now(UTC)).total_seconds()
        return max(1, math.ceil(left))

    def refuse_if_open(self) -> None:
        """Raise :class:`~knhk.errors.CircuitOpenError` when the breaker is open (no trial is taken)."""
        if self.current_state == pybreaker.STATE_OPEN:
            opened = self._state_storage.opened_at
            if opened is not None and datetime.now(UTC) < opened + timedelta(seconds=self.reset_timeout):
                raise CircuitOpenError(f"{self.dependency} is unavailable (circuit breaker open); retry later",
                                       retry_after=self.retry_after_s(), dependency=self.dependency)

    def trip(self, reason: str) -> None:
        """Open the breaker now (a watchdog found the dependency down or hung), unless it is already open."""
        with self._lock:
            if self.current_state == pybreaker.STATE_OPEN:
                return
            log.warning("circuit breaker %s tripped: %s", self.dependency, reason,
                        extra={"dependency": self.dependency})
            self.open()

    def _admit(self) -> bool:
        """Let a call through (True: as one of the half-open trials) or refuse it with CircuitOpenError."""
        state = self.current_state
        if state == pybreaker.STATE_CLOSED:
            return False
        if state == pybreaker.STATE_OPEN:
            opened = self._state_storage.opened_at
            if opened is not None and datetime.now(UTC) < opened + timedelta(seconds=self.reset_timeout):
                raise CircuitOpenError(f"{self.dependency} is unavailable (circuit breaker open after repeated "
                                       "failures); retry later", retry_after=self.retry_after_s(),
                                       dependency=self.dependency)
        with self._trial_lock:
            if self._trials >= self.success_threshold:
                raise CircuitOpenError(f"{self.dependency} is recovering (circuit breaker half-open, its trial "
                                       "calls are running); retry shortly", retry_after=1, dependency=self.dependency)
            self._trials += 1
        return True

    def _record(self, exc: BaseException | None) -> None:
        """Hand one outcome to pybreaker's state machine (under its lock, for a moment)."""
        with suppress(BaseException):  # the outcome itself (or pybreaker's error for it): the caller re-raises
            self.call(_replay, exc)

    @contextmanager
    def guard(self, is_failure: Callable[[BaseException], bool] = is_dependency_failure) -> Iterator[None]:
        """Run the block under the breaker: refused fast when open; failures (``is_failure``) counted."""
        trial = self._admit()
        try:
            yield
        except BaseException as exc:
            self._record(exc if is_failure(exc) else None)
            raise
        else:
            self._record(None)
        finally:
            if trial:
                with self._trial_lock:
                    self._trials -= 1

    def run(self, func: Callable[[], T], is_failure: Callable[[BaseException], bool] = is_dependency_failure) -> T:
        """``func()`` under :meth:`guard`."""
        with self.guard(is_failure):
            return func()

    # -- early recovery -----------------------------------------------------------------------------
    def recover_with(self, probe: Callable[[], object]) -> None:
        """While open, run ``probe`` (bounded by its own timeout) every ``probe_every_s`` of the policy; when it
        succeeds the breaker goes half-open."""
        self._probe = probe
        if self.current_state == pybreaker.STATE_OPEN:
            self._start_probe()

    def _start_probe(self) -> None:
        with self._trial_lock:
            if self._probe is None or self._probing:
                return
            self._probing = True
        threading.Thread(target=self._probe_loop, name=f"knhk-probe-{self.dependency}", daemon=True).start()

    def _probe_loop(self) -> None:
        with self._lock:  # started from inside open(), which holds the lock until the new state is stored
            pass
        try:
            while self.current_state == pybreaker.STATE_OPEN and self._probe is not None:
                time.sleep(self._probe_every_s)
                if self.current_state != pybreaker.STATE_OPEN:
                    break
                try:
                    self._probe()
                except Exception as exc:
                    log.debug("probe of %s failed: %s", self.dependency, exc)
                    continue
                log.info("probe of %s succeeded: half-open, %d trial calls", self.dependency, self.success_threshold)
                with self._lock:
                    if self.current_state == pybreaker.STATE_OPEN:
                        self.half_open()
                break
        finally:
            with self._trial_lock:
                self._probing = False
        if self.current_state == pybreaker.STATE_OPEN:  # opened again while the loop was ending
            self._start_probe()


_breakers: dict[str, Breaker] = {}
_registry_lock = threading.Lock()
_breaker_policy = BreakerPolicy()
_retry_policy = RetryPolicy()


def configure(breakers: BreakerPolicy | None = None, retries: RetryPolicy | None = None) -> None:
    """Apply the configured numbers (``knhk.app.runtime`` does, from the settings) to every breaker and retry."""
    global _breaker_policy, _retry_policy
    with _registry_lock:
        if breakers is not None:
            _breaker_policy = breakers
            for breaker in _breakers.values():
                breaker.apply(breakers)
        if retries is not None:
            _retry_policy = retries


def breaker_for(dependency: str) -> Breaker:
    """The process's one breaker of ``dependency`` (created closed on first use)."""
    with _registry_lock:
        found = _breakers.get(dependency)
        if found is None:
            found = _breakers[dependency] = Breaker(dependency, _breaker_policy)
        return found


def reset() -> None:
    """Close every breaker of the process (its counts cleared), e.g. after an operator fixed the dependency."""
    with _registry_lock:
        breakers = list(_breakers.values())
    for breaker in breakers:
        if breaker.current_state != pybreaker.STATE_CLOSED:
            breaker.close()
        breaker._state_storage.reset_counter()


def state_of(dependency: str) -> str | None:
    """``closed``, ``open``, ``half-open``, or None when no breaker of that name exists."""
    with _registry_lock:
        found = _breakers.get(dependency)
    return found.current_state if found is not None else None


class _JitteredExponential(tenacity.wait.wait_base):
    """base × multiplier^(n-1), capped, times a uniform factor in [1 - jitter, 1 + jitter] (capped again)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return retry_wait(self.policy, retry_state.attempt_number)


def retry_wait(policy: RetryPolicy, attempt: int) -> float:
    """The wait after failed attempt ``attempt`` (1-based) under ``policy`` (for tests and documentation)."""
    exp = min(policy.cap_s, policy.base_s * policy.multiplier ** (attempt - 1))
    return min(policy.cap_s, exp * random.uniform(1 - policy.jitter, 1 + policy.jitter))


def idempotent_retry(operation: str,
                     retry_on: Callable[[BaseException], bool] = is_dependency_failure,
                     *, deadline_s: float | None = None) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Decorate an idempotent operation: retried on transient dependency failures, ``knhk_retries_total``
    counting each retry; the last failure is re-raised unchanged. ``deadline_s``: no retry whose wait would end
    later than this many seconds after the first attempt began (a caller is waiting: a dependency that hangs
    until its timeout is tried once or twice, not five times)."""
    RETRIES.labels(operation)

    def count(retry_state: tenacity.RetryCallState) -> None:
        RETRIES.labels(operation).inc()
        outcome = retry_state.outcome
        log.info("retrying %s after attempt %d failed: %s", operation, retry_state.attempt_number,
                 outcome.exception() if outcome is not None else "?")

    def decorate(func: Callable[P, T]) -> Callable[P, T]:
        @wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            policy = _retry_policy
            stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(policy.attempts)
            if deadline_s is not None:
                stop = stop | tenacity.stop_before_delay(deadline_s)
            retrying = tenacity.Retrying(stop=stop,
                                         wait=_JitteredExponential(policy),
                                         retry=tenacity.retry_if_exception(retry_on),
                                         before_sleep=count, reraise=True)
            return retrying(func, *args, **kwargs)

        return wrapper

    return decorate


__all__ = ["Breaker", "BreakerPolicy", "RetryPolicy", "breaker_for", "configure", "idempotent_retry",
           "is_dependency_failure", "reset", "retry_wait", "state_of"]

