"""The service's JSON answers as ``TypedDict``s (the shapes of ``memory_core/models.py``, field for field).

The client returns the decoded JSON itself, so these are plain ``dict``s at run time: index them as the guide does
(``context["formatted_context"]``).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict


class ChatMessage(TypedDict):
    """One message of ``active_context``."""

    role: Literal["user", "assistant"]
    content: str


class MemoryContext(TypedDict):
    """Answer of ``/sessions/start`` and ``/memory/context``: the ready-to-inject context."""

    session_id: str
    user_id: str
    active_context: list[ChatMessage]
    cumulative_summary: str
    insights: list[str]
    session_summaries: list[str]
    formatted_context: str
    restored: bool
    turn_count: int


class StoreResult(TypedDict):
    """Answer of ``/memory/store`` (``status`` ``stored``), or ``buffered`` when the client kept it to send later."""

    status: Literal["stored", "buffered"]
    user_id: str
    session_id: str
    turn_id: str
    seq: NotRequired[int]
    duplicate: NotRequired[bool]


class ReflectionHandle(TypedDict):
    """Answer of ``/sessions/end`` (202): the reflection's instance id and the service's own status route."""

    user_id: str
    session_id: str
    status: Literal["reflecting"]
    id: str
    statusQueryGetUri: NotRequired[str | None]


class ReflectionOutput(TypedDict):
    """``output`` of a completed reflection: the session summary and the insight ids it wrote."""

    user_id: str
    session_id: str
    turn_count: int
    summary_id: str | None
    summary: str | None
    insights_added: list[str]
    insights_updated: list[str]
    insights_superseded: list[str]
    duplicates: int


class ReflectionStatus(TypedDict):
    """The reflection's status in Durable's shape (``GET statusQueryGetUri``: ``/sessions/reflection``)."""

    name: str
    instanceId: str
    runtimeStatus: str
    output: NotRequired[ReflectionOutput | Any]
    createdTime: str
    lastUpdatedTime: str


class RetrievedItem(TypedDict):
    """One search result with its provenance."""

    kind: str
    text: str
    score: float
    session_id: str | None
    turn_seqs: list[int]
    timestamp: str | None
    excerpt: bool


class RetrieveResult(TypedDict):
    """Answer of ``/memory/retrieve``."""

    query: str
    facts: list[str]
    count: int
    items: list[RetrievedItem]
    tokens: int


class InsightItem(TypedDict):
    """An insight with its provenance and validity."""

    id: str
    text: str
    key: str
    category: str
    status: Literal["active", "superseded"]
    source_session_id: str
    source_turns: list[int]
    valid_from: str
    valid_to: str | None
    superseded_by: str | None
    updated_at: str


class InsightsResult(TypedDict):
    """Answer of ``/insights``."""

    user_id: str
    insights: list[str]
    count: int
    items: list[InsightItem]


class SummaryItem(TypedDict):
    """A session summary with its session and turn count."""

    session_id: str
    summary: str
    turn_count: int
    created_at: str


class SummariesResult(TypedDict):
    """Answer of ``/summaries``."""

    user_id: str
    summaries: list[str]
    count: int
    items: list[SummaryItem]


class ForgetPending(TypedDict):
    """What of a forgotten user was still there when the forget answered."""

    instances: int
    entities: int


class ForgetResult(TypedDict):
    """Answer of ``DELETE /users/{user_id}``: the receipt, what was deleted by kind and what is pending.

    ``complete`` false: the service goes on until nothing of the user remains, and refuses the user's session starts
    and turns (409) until then.
    """

    user_id: str
    sessions: int
    turns: int
    chunks: int
    summaries: int
    insights: int
    histories_purged: int
    entities_deleted: int
    complete: bool
    pending: ForgetPending
    began_at: str | None
