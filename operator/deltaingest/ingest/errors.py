"""Errors on the request path, each with the HTTP status it maps to."""

from __future__ import annotations

from typing import Any


class IngestError(Exception):
    """A request that cannot be accepted as sent; nothing from it is written."""

    status = 400

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **{k: v for k, v in self.detail.items() if v is not None}}


class BadRequest(IngestError):
    """Malformed: not JSON, not Arrow, bad headers."""

    status = 400


class Unprocessable(IngestError):
    """Well-formed but does not fit the table schema."""

    status = 422


class RequestTimeout(IngestError):
    """The body did not arrive in time; a slow client must not hold its share of the in-flight budget."""

    status = 408


class PayloadTooLarge(IngestError):
    status = 413


class UnsupportedMediaType(IngestError):
    status = 415


class Overloaded(IngestError):
    """Over the in-flight byte budget: the client should retry after a pause."""

    status = 429


class CommitFailed(IngestError):
    """The commit did not happen; none of the group's rows are visible."""

    status = 503


class Unavailable(IngestError):
    """The table could not be read (storage down): nothing is wrong with the request."""

    status = 503
