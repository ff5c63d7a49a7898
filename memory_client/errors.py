"""Typed exceptions carrying the memory service's JSON error ``{"error", "detail", "field"}``.

Every exception the client raises on purpose is a :class:`MemoryServiceError`. The service's answer picks the
class: 400 :class:`InvalidRequest`, 401/403 :class:`Unauthorized`, 404 :class:`SessionNotFound` (or
:class:`NotFound` for another missing resource), 409 :class:`SessionEnded` or :class:`Conflict`, 503 and
connection failures (after the retries) :class:`ServiceUnavailable` (also for a gateway's 502 and 504), any
other 5xx :class:`ServerError`.
"""

from __future__ import annotations

from typing import Any

import httpx


class MemoryServiceError(Exception):
    """Base class of the client's errors.

    Attributes:
        status: the HTTP status of the answer, or ``None`` when no answer came (connection failure, timeout).
        error: the service's error kind (``"ValidationError"``, ``"SessionNotFoundError"``...), or a client-side
            name such as ``"ConnectError"`` when the service was not reached.
        detail: the service's explanation.
        field: the request field the error is about, when the service names one.
        body: the decoded JSON body of the answer (``None`` if there was none or it was not JSON).
        method: the HTTP method of the failed request.
        url: the URL of the failed request.
    """

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        error: str | None = None,
        field: str | None = None,
        body: Any = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        self.status = status
        self.error = error or type(self).__name__
        self.detail = detail
        self.field = field
        self.body = body
        self.method = method
        self.url = url
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.method} {self.url}: " if self.method and self.url else ""
        status = f"{self.status} " if self.status is not None else ""
        field = f" (field: {self.field})" if self.field else ""
        return f"{where}{status}{self.error}: {self.detail}{field}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, error={self.error!r}, "
            f"detail={self.detail!r}, field={self.field!r})"
        )


class InvalidRequest(MemoryServiceError):
    """400: the service refused the request's content; ``field`` names the offending field."""


class Unauthorized(MemoryServiceError):
    """401 or 403: a missing or wrong key (``x-functions-key``: a function key, or the master key for admin routes).

    With ``CALLER_IDENTITY=principal`` on the service, also no signed-in caller (401) or a ``user_id`` that is not the
    caller's (403).
    """


class NotFound(MemoryServiceError):
    """404: the resource does not exist (a wrong URL, or an unknown reflection instance)."""


class SessionNotFound(NotFound):
    """404 ``Session not found``: the session does not exist, or it has ended and cannot be restored."""


class Conflict(MemoryServiceError):
    """409: the request conflicts with stored state (e.g. a session id that is taken)."""


class SessionEnded(Conflict):
    """409: a turn was sent to a session that has ended (or is ending)."""


class ServiceUnavailable(MemoryServiceError):
    """The service could not be reached, or answered 503 (502, 504), on every attempt; ``status`` None: no answer."""


class ServerError(MemoryServiceError):
    """The service failed (500, or another 5xx that is not unavailability), on every attempt."""


class ReflectionTimeout(MemoryServiceError):
    """``wait_for_reflection`` gave up before the reflection reached a final state; ``body`` is the last status."""


def _decode(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> MemoryServiceError:
    """The typed exception for an error answer (status >= 400), with the service's JSON error when it sent one."""
    body = _decode(response)
    error: str | None = None
    detail: str = response.reason_phrase or f"HTTP {response.status_code}"
    field: str | None = None
    if isinstance(body, dict):
        error = body.get("error") if isinstance(body.get("error"), str) else None
        if isinstance(body.get("detail"), str):
            detail = body["detail"]
        field = body.get("field") if isinstance(body.get("field"), str) else None
    elif response.text:
        detail = response.text[:500]
    status = response.status_code
    cls: type[MemoryServiceError]
    if status == 400:
        cls = InvalidRequest
    elif status in (401, 403):
        cls = Unauthorized
    elif status == 404:
        cls = SessionNotFound if error == "SessionNotFoundError" or detail == "Session not found" else NotFound
    elif status == 409:
        cls = SessionEnded if error == "SessionEndedError" else Conflict
    elif status in (502, 503, 504):
        cls = ServiceUnavailable
    elif status >= 500:
        cls = ServerError
    else:
        cls = MemoryServiceError
    return cls(
        detail,
        status=status,
        error=error or f"HTTP{status}",
        field=field,
        body=body,
        method=response.request.method,
        url=str(response.request.url),
    )
