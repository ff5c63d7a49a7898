"""One error hierarchy for the memory service.

The host layer maps each class to an HTTP status in a single table; nothing in ``memory_core`` knows about HTTP.
"""

from __future__ import annotations


class MemoryServiceError(Exception):
    """Base class of every error the service raises on purpose."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class ConfigurationError(MemoryServiceError):
    """A setting is missing or has a bad value; raised at start-up, naming the setting."""


class InvalidRequestError(MemoryServiceError):
    """The caller sent something the service cannot accept (names the field when there is one)."""


class UnauthenticatedError(MemoryServiceError):
    """The request carries no authenticated caller where the service needs one (``CALLER_IDENTITY=principal``)."""


class ForbiddenError(MemoryServiceError):
    """The caller may not have what the request asks for, such as another user's memory (names the field)."""


class NotFoundError(MemoryServiceError):
    """Something the request names does not exist (the field says what)."""


class SessionNotFoundError(NotFoundError):
    """The session does not exist, or it was completed and cannot be restored."""

    def __init__(self, user_id: str, session_id: str) -> None:
        super().__init__("Session not found", field="session_id")
        self.user_id = user_id
        self.session_id = session_id


class SessionEndedError(MemoryServiceError):
    """A turn was sent to a session that has ended (or is ending)."""

    def __init__(self, user_id: str, session_id: str) -> None:
        super().__init__("Session has ended and accepts no more turns", field="session_id")
        self.user_id = user_id
        self.session_id = session_id


class ConflictError(MemoryServiceError):
    """The request conflicts with stored state (for example a turn id reused with other content)."""


class UserForgettingError(ConflictError):
    """The user's forget (``DELETE /users/{user_id}``) has begun and is not complete: nothing of theirs is stored."""

    def __init__(self, user_id: str) -> None:
        super().__init__(
            "This user is being forgotten: nothing is stored for them until that is complete (the DELETE's answer "
            "says what is pending)",
            field="user_id",
        )
        self.user_id = user_id


class EmbeddingDimensionMismatchError(ConfigurationError):
    """The store was created with another embedding model or dimension than the one configured."""


class ModelOutputError(MemoryServiceError):
    """A chat or embedding model answered with something that does not fit the expected shape."""


class UpstreamUnavailableError(MemoryServiceError):
    """A dependency (store or model) could not be reached after retries."""
