"""Exceptions the client raises."""

from __future__ import annotations


class CloudWsError(Exception):
    """Base class of the client's errors."""


class AuthenticationError(CloudWsError):
    """The server (or the identity provider) refused the credentials: never retried.

    Attributes:
        status: The HTTP status of the refused handshake (401, 403), or
            ``None`` when the token could not be obtained in the first place.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConnectError(CloudWsError):
    """The endpoint could not be reached, or refused the handshake for a reason other than the token."""


class RequestError(CloudWsError):
    """The server refused a request (an ``error`` reply), or did not answer it in time.

    Attributes:
        code: The error's stable ``code`` (``None`` when no answer came).
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code
