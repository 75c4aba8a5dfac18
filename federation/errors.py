"""Domain errors: each carries an HTTP status, a one-line message safe to show,
and a stable ``kind`` string that is the contract between activity, workflow
and API (it becomes the Temporal ``ApplicationError.type``)."""

from __future__ import annotations

from typing import ClassVar


class FederationError(Exception):
    """Base class. ``message`` is safe for a response body; ``cause`` is for logs only."""

    kind: ClassVar[str] = "FederationError"
    status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, cause: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


class NotFound(FederationError):
    kind = "NotFound"
    status = 404


class Conflict(FederationError):
    kind = "Conflict"
    status = 409


class InvalidInput(FederationError):
    kind = "InvalidInput"
    status = 422


class InvalidCSR(FederationError):
    kind = "InvalidCSR"
    status = 400


class TokenNotFound(FederationError):
    kind = "TokenNotFound"
    status = 404


class TokenExpired(FederationError):
    kind = "TokenExpired"
    status = 410


class TokenUsed(FederationError):
    kind = "TokenUsed"
    status = 410


class GrantNotPending(FederationError):
    kind = "GrantNotPending"
    status = 409


class PeerMismatch(FederationError):
    kind = "PeerMismatch"
    status = 409


class EnrollmentInProgress(FederationError):
    """Another token of the same grant is being redeemed: one enrollment per grant at a time."""

    kind = "EnrollmentInProgress"
    status = 409


class CAUnavailable(FederationError):
    """The CA could not be reached or answered 5xx: worth retrying."""

    kind = "CAUnavailable"
    status = 503
    retryable = True


class CARefused(FederationError):
    """The CA answered 4xx: retrying the same request will not help."""

    kind = "CARefused"
    status = 502


class CertificateRejected(FederationError):
    """An issued certificate failed our checks (OIDs, key, chain, validity)."""

    kind = "CertificateRejected"
    status = 502


class ActivationLost(FederationError):
    """The grant or peer changed state between claim and activation (CRIT-2)."""

    kind = "ActivationLost"
    status = 409


class Unavailable(FederationError):
    """A step could not finish for a reason nobody foresaw (a database timeout, a bug):
    undo what can be undone; the same request may be retried."""

    kind = "Unavailable"
    status = 503
    retryable = True


def _subclasses(cls: type[FederationError]) -> list[type[FederationError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def error_class(kind: str) -> type[FederationError]:
    """The error class of a kind (the ``ApplicationError.type`` contract); an unknown kind
    is ``Unavailable``."""
    for cls in _subclasses(FederationError):
        if cls.kind == kind:
            return cls
    return Unavailable


def status_for_kind(kind: str) -> int:
    """The one table from error kind to HTTP status: the classes above."""
    return error_class(kind).status


def from_kind(kind: str, message: str) -> FederationError:
    """Rebuild the domain error a workflow failed with, to answer it like any other."""
    return error_class(kind)(message)
