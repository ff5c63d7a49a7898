"""Python client of the agent memory service, and its Microsoft Agent Framework context provider.

* :class:`MemoryServiceClient`: the guide's Pattern 2, an async client over ``httpx`` with retries, typed errors,
  read-your-writes and graceful degradation (see :mod:`memory_client.client`).
* :class:`CosmosMemoryProvider`: the guide's Pattern 1, a context provider for ``agent_framework.Agent``. It needs the
  ``agent-framework`` extra (``pip install './memory_client[agent-framework]'``); it is imported on first use, so
  ``import memory_client`` works without Agent Framework installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from memory_client.client import DEFAULT_SERVICE_URL, TERMINAL_STATUSES, MemoryServiceClient, PendingTurn, empty_context
from memory_client.errors import (
    Conflict,
    InvalidRequest,
    MemoryServiceError,
    NotFound,
    ReflectionTimeout,
    ServerError,
    ServiceUnavailable,
    SessionEnded,
    SessionNotFound,
    Unauthorized,
)
from memory_client.schemas import (
    ChatMessage,
    ForgetResult,
    InsightItem,
    InsightsResult,
    MemoryContext,
    ReflectionHandle,
    ReflectionOutput,
    ReflectionStatus,
    RetrievedItem,
    RetrieveResult,
    StoreResult,
    SummariesResult,
    SummaryItem,
)

if TYPE_CHECKING:
    from memory_client.cosmos_memory_provider import CosmosMemoryProvider

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_SERVICE_URL",
    "TERMINAL_STATUSES",
    "ChatMessage",
    "Conflict",
    "CosmosMemoryProvider",
    "ForgetResult",
    "InsightItem",
    "InsightsResult",
    "InvalidRequest",
    "MemoryContext",
    "MemoryServiceClient",
    "MemoryServiceError",
    "NotFound",
    "PendingTurn",
    "ReflectionHandle",
    "ReflectionOutput",
    "ReflectionStatus",
    "ReflectionTimeout",
    "RetrieveResult",
    "RetrievedItem",
    "ServerError",
    "ServiceUnavailable",
    "SessionEnded",
    "SessionNotFound",
    "StoreResult",
    "SummariesResult",
    "SummaryItem",
    "Unauthorized",
    "empty_context",
]


def __getattr__(name: str) -> Any:
    # CosmosMemoryProvider needs agent_framework: import it only when asked for (a clear ImportError without it).
    if name == "CosmosMemoryProvider":
        from memory_client.cosmos_memory_provider import CosmosMemoryProvider

        return CosmosMemoryProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
