"""The one error hierarchy of KNHK.

Every error a user can see derives from :class:`KnhkError`. Each class carries the HTTP status the service
answers with (RFC 9457 problem type ``code``) and the CLI exit code (SPEC §13: 1 integrity failure or
rejected, 2 usage error, 3 dependency unavailable). Messages say what is wrong in the product's words.
"""

from __future__ import annotations

from typing import Any, ClassVar


class KnhkError(Exception):
    """Base of every KNHK error."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class UsageError(KnhkError):
    """The request or command line is malformed."""

    code = "malformed"
    http_status = 400
    exit_code = 2


class InvalidInputError(KnhkError):
    """Well-formed input that breaks a rule of the contract (a value out of range, a bad field)."""

    code = "invalid"
    http_status = 422
    exit_code = 2


class CanonicalEncodingError(InvalidInputError):
    """A value cannot be encoded as canonical ledger JSON (SPEC §8)."""

    code = "not_canonical"


class ConfigurationError(KnhkError):
    """The configuration is inconsistent or incomplete."""

    code = "configuration"
    http_status = 500
    exit_code = 2


class NotFoundError(KnhkError):
    """The named thing does not exist."""

    code = "not_found"
    http_status = 404
    exit_code = 2


class ConflictError(KnhkError):
    """The request conflicts with stored state (duplicate id with other content, stale base)."""

    code = "conflict"
    http_status = 409
    exit_code = 1


class StaleBaseError(ConflictError):
    """A promotion's parent is no longer the sector's current snapshot."""

    code = "stale_base"


class ImmutableError(ConflictError):
    """An attempt to change something that is immutable (a stored snapshot, a ledger entry)."""

    code = "immutable"


class RejectedError(KnhkError):
    """The product decided against the request (validation failed, doctrine refused)."""

    code = "rejected"
    http_status = 422
    exit_code = 1


class IntegrityError(KnhkError):
    """Stored data failed verification (signature, chain, Merkle root, checkpoint)."""

    code = "integrity"
    http_status = 500
    exit_code = 1


class VerificationError(IntegrityError):
    """A signature, proof, checkpoint, bundle or stored digest did not verify.

    The one exception of every verification in KNHK (:mod:`knhk.proof` and the checks built on it): the
    message names the check that failed. Predicates that only answer yes or no are named ``is_*`` / ``proves_*``
    and never raise.
    """

    code = "verification_failed"


class AuthenticationError(KnhkError):
    """Missing or invalid credentials."""

    code = "unauthenticated"
    http_status = 401
    exit_code = 1


class ForbiddenError(KnhkError):
    """Authenticated, but not allowed to do this."""

    code = "forbidden"
    http_status = 403
    exit_code = 1


class PayloadTooLargeError(KnhkError):
    """The request body or a value exceeds its size limit."""

    code = "too_large"
    http_status = 413
    exit_code = 2


class RateLimitedError(KnhkError):
    """Too many requests; retry after ``retry_after`` seconds."""

    code = "rate_limited"
    http_status = 429
    exit_code = 3

    def __init__(self, message: str, retry_after: int = 1, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class DependencyUnavailableError(KnhkError):
    """A dependency (database, key file, identity provider) cannot be reached."""

    code = "unavailable"
    http_status = 503
    exit_code = 3

    def __init__(self, message: str, retry_after: int = 5, **details: Any) -> None:
        super().__init__(message, **details)
        self.retry_after = retry_after


class CircuitOpenError(DependencyUnavailableError):
    """A dependency's circuit breaker is open: the call was refused without trying (SPEC §11)."""

    code = "circuit_open"
