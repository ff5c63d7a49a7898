"""The HTTP API's request and response schemas: the guide's shapes, field for field, plus documented extras.

Size limits come from the settings: validate with ``model_validate(data, context=limits_context(settings))``;
without a context the defaults of ``Settings`` apply. Each limited field's JSON Schema names its setting
(``x-setting``) next to the keyword it bounds (``LIMIT_KEYWORDS``), with the default value; ``http_api.openapi``
writes the configured values in. Requests are strict: booleans are ``true``/``false``, integers are numbers without a
fraction, strings are strings (``memory_core.fields`` has the types and their rules).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
)

from memory_core.config import Settings
from memory_core.domain import Insight, ItemFilter, MemoryKind, SearchHit, SessionRecord, SessionSummary
from memory_core.fields import (
    JSON_RULE,
    MAX_JSON_DEPTH,
    NOT_BLANK_PATTERN,
    TIMESTAMP_RULE,
    Id,
    JsonInt,
    JsonValue,
    PathId,
    Timestamp,
    bounded_json_int,
    check_json,
    is_blank,
)
from memory_core.pool import PoolStats
from memory_core.retrieval import DERIVED_WEIGHT, NEIGHBOUR_WEIGHT, SESSION_WEIGHT, TEXT_WEIGHT

MAX_RETRIEVE_TOKENS = 100_000  # the largest budget /memory/retrieve takes
MAX_FILTER_SESSIONS = 100  # the most session ids a search filter names

# The JSON Schema keyword each setting bounds (x-maxJsonBytes: JSON Schema has no keyword for a value's size).
LIMIT_KEYWORDS = {
    "MAX_MESSAGE_CHARS": "maxLength",
    "MAX_QUERY_CHARS": "maxLength",
    "MAX_TOP_K": "maximum",
    "MAX_METADATA_BYTES": "x-maxJsonBytes",
    "MAX_LIST_LIMIT": "maximum",
}
# Each limit's default, from the settings' own defaults (one place: memory_core/config.py).
_DEFAULTS: dict[str, int] = {name: int(Settings.model_fields[name].default) for name in LIMIT_KEYWORDS}


def limits_context(settings: Settings) -> dict[str, int]:
    """The validation context that applies the configured limits."""
    return {name: int(getattr(settings, name)) for name in _DEFAULTS}


def _bounded_by(setting: str, **schema: Any) -> dict[str, Any]:
    """The JSON Schema of a field bounded by a setting (the default value; the document writes the configured one)."""
    return {**schema, LIMIT_KEYWORDS[setting]: _DEFAULTS[setting], "x-setting": setting}


MAX_METADATA_DEPTH = MAX_JSON_DEPTH


def _limit(info: ValidationInfo, name: str) -> int:
    context = info.context if isinstance(info.context, dict) else {}
    return int(context.get(name, _DEFAULTS[name]))


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False, strict=True)


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserRef(_Request):
    """A user named in the path (``/users/{user_id}``): no slash, backslash, ``#``, ``?`` or ``%`` (see ``PathId``)."""

    user_id: PathId


class UserQuery(_Request):
    """A user named in the query string (``/users?user_id=...``): any id."""

    user_id: Id


# -- sessions ---------------------------------------------------------------------------------------------------


class StartSessionRequest(_Request):
    """``POST /sessions/start``."""

    user_id: Id
    session_id: Id | None = Field(None, description="Auto-generated if not provided")
    restore: bool = Field(
        True, description="Restore the session if it exists (hot, or evicted to the store); true or false"
    )


class EndSessionRequest(_Request):
    """``POST /sessions/end``."""

    user_id: Id
    session_id: Id


class Message(_Response):
    """One message of the active context."""

    role: Literal["user", "assistant"]
    content: str


class ContextResponse(_Response):
    """Response of ``/sessions/start`` and ``/memory/context``."""

    session_id: str
    user_id: str
    active_context: list[Message]
    cumulative_summary: str
    insights: list[str]
    session_summaries: list[str]
    formatted_context: str
    restored: bool = Field(description="Whether the session was restored from the store (cold)")
    turn_count: int = Field(0, description="Turns stored in the session so far")


class ContextRequest(_Request):
    """``POST /memory/context``."""

    user_id: Id
    session_id: Id
    after_turn_id: Id | None = Field(
        None,
        description="A turn this client stored: checked to be in the session (404 if it never was). Every stored "
        "turn is in the context at once, so it is never waited for.",
    )


# -- turns ------------------------------------------------------------------------------------------------------


class StoreTurnRequest(_Request):
    """``POST /memory/store``: one turn, a user message and the agent's reply."""

    user_id: Id
    session_id: Id
    user_message: str = Field(
        min_length=1,
        description="Not blank; at most MAX_MESSAGE_CHARS characters",
        json_schema_extra=_bounded_by("MAX_MESSAGE_CHARS", pattern=NOT_BLANK_PATTERN),
    )
    agent_message: str = Field(
        min_length=1,
        description="Not blank; at most MAX_MESSAGE_CHARS characters",
        json_schema_extra=_bounded_by("MAX_MESSAGE_CHARS", pattern=NOT_BLANK_PATTERN),
    )
    turn_id: Id | None = Field(
        None,
        description="Idempotency key: the same turn_id again is the same turn (stored once, however late the repeat; "
        "its timestamp and metadata are the first ones); with other messages it is a 409. Generated when omitted.",
    )
    timestamp: Timestamp | None = Field(None, description=f"When the turn happened: {TIMESTAMP_RULE}. Default: now")
    metadata: dict[str, Any] = Field(
        default_factory=dict,
        description=f"Free-form JSON object kept with the turn: at most MAX_METADATA_BYTES bytes as compact UTF-8 "
        f"JSON (x-maxJsonBytes); {JSON_RULE}",
        json_schema_extra=_bounded_by("MAX_METADATA_BYTES"),
    )

    @field_validator("user_message", "agent_message")
    @classmethod
    def _bounded_message(cls, value: str, info: ValidationInfo) -> str:
        limit = _limit(info, "MAX_MESSAGE_CHARS")
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters (got {len(value)})")
        if is_blank(value):
            raise ValueError("must not be blank")
        return value

    @field_validator("metadata", mode="plain", json_schema_input_type=dict[str, JsonValue])
    @classmethod
    def _bounded_metadata(cls, value: Any, info: ValidationInfo) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object")
        check_json(value, "metadata")
        limit = _limit(info, "MAX_METADATA_BYTES")
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > limit:
            raise ValueError(f"must be at most {limit} bytes of JSON (got {size})")
        return value


class StoreTurnResponse(_Response):
    """Response of ``/memory/store``: 201 when the turn was stored now, 200 for a repeat of a stored ``turn_id``.

    Either way the turn is durable and in the session's context from now on.
    """

    status: Literal["stored"] = "stored"
    user_id: str
    session_id: str
    turn_id: str = Field(description="The turn's id (the one sent, or the one generated)")
    seq: int = Field(description="The turn's 1-based position in the session, in the order turns were stored")
    duplicate: bool = Field(description="True when this turn_id was stored before (nothing was written now)")


class EndSessionResponse(_Response):
    """Response of ``/sessions/end`` (202): reflection has started; follow it with ``statusQueryGetUri``."""

    user_id: str
    session_id: str
    status: Literal["reflecting"] = "reflecting"
    id: str = Field(description="Instance id of the reflection orchestration")
    statusQueryGetUri: str | None = Field(
        None,
        description="GET it (with the same key) for the reflection's status: this service's own route, for this "
        "session only. No Durable management URL (and no system key) is ever handed out.",
    )


class ReflectionStatusRequest(_Request):
    """``GET /sessions/reflection?user_id=...&session_id=...``."""

    user_id: Id
    session_id: Id


class ReflectionStatusResponse(_Response):
    """A session's reflection, in the shape of the Durable status document (202 while it runs, 200 once done)."""

    name: str
    instanceId: str
    runtimeStatus: str = Field(description="Pending, Running, Completed, Failed or Terminated, as Durable reports it")
    output: Any = Field(
        None, description="Once Completed: the summary and the insights written (summary, insights_added, ...)"
    )
    createdTime: datetime | None
    lastUpdatedTime: datetime | None

    @property
    def finished(self) -> bool:
        """Whether the reflection will change no more."""
        return self.runtimeStatus in ("Completed", "Failed", "Terminated")


# -- retrieval --------------------------------------------------------------------------------------------------


class RetrieveRequest(_Request):
    """``POST /memory/retrieve``."""

    user_id: Id
    session_id: Id | None = Field(None, description="Accepted for compatibility; search covers all the user's past")
    query: str = Field(
        min_length=1,
        description="Not blank; at most MAX_QUERY_CHARS characters",
        json_schema_extra=_bounded_by("MAX_QUERY_CHARS", pattern=NOT_BLANK_PATTERN),
    )
    top_k: JsonInt = Field(
        5,
        ge=1,
        description="1 to MAX_TOP_K results. Default: 5, or MAX_TOP_K with max_tokens (the budget decides)",
        json_schema_extra=_bounded_by("MAX_TOP_K"),
    )
    max_tokens: bounded_json_int(1, MAX_RETRIEVE_TOKENS) | None = Field(  # type: ignore[valid-type]
        None,
        description="A budget for the returned texts, in cl100k tokens: the best items that fit it, each text at "
        "most once (a sentence another item already gave is left out) and a long item cut to the passage that "
        "matched the query (its item says excerpt: true). Default: no budget, top_k whole items",
    )
    kinds: list[Annotated[MemoryKind, Strict(False)]] | None = Field(
        None, min_length=1, description="Only these kinds of items. Default: every kind"
    )
    session_ids: list[Id] | None = Field(
        None,
        max_length=MAX_FILTER_SESSIONS,
        description="Only items of these sessions (an insight's session is the one it was learned in)",
    )
    since: Timestamp | None = Field(
        None,
        description="Only items from this time on (inclusive): a turn's own time, a chunk's last turn's, a "
        "summary's creation, an insight's last update",
    )
    until: Timestamp | None = Field(
        None, description="Only items before this time (exclusive); as since. Not after since: nothing is found"
    )
    as_of: Timestamp | None = Field(
        None,
        description="What the memory held at this time: insights valid then (valid_from <= as_of < valid_to, so "
        "one superseded later is returned and one learned later is not), other items from before it",
    )

    @field_validator("query")
    @classmethod
    def _bounded_query(cls, value: str, info: ValidationInfo) -> str:
        limit = _limit(info, "MAX_QUERY_CHARS")
        if len(value) > limit:
            raise ValueError(f"must be at most {limit} characters (got {len(value)})")
        if is_blank(value):
            raise ValueError("must not be blank")
        return value

    @field_validator("top_k")
    @classmethod
    def _bounded_top_k(cls, value: int, info: ValidationInfo) -> int:
        limit = _limit(info, "MAX_TOP_K")
        if value > limit:
            raise ValueError(f"must be at most {limit}")
        return value

    def item_filter(self) -> ItemFilter:
        """The filters of this request as the stores take them."""
        return ItemFilter(
            session_ids=None if self.session_ids is None else tuple(self.session_ids),
            since=self.since,
            until=self.until,
            as_of=self.as_of,
        )


class RetrievedItem(_Response):
    """One search result with its provenance."""

    kind: MemoryKind
    text: str
    score: float = Field(
        description="Relevance, higher first: with an embedder, the item's full-text and vector scores, each scaled "
        f"to 0-1 over the search's hits, weighted {TEXT_WEIGHT:g} and {1 - TEXT_WEIGHT:g} (without one, its full-text "
        f"score alone, scaled the same way; chunks and summaries count {DERIVED_WEIGHT[MemoryKind.CHUNK]:g} of "
        f"theirs); a turn then gains {SESSION_WEIGHT:g} times the score of the best other item of its session and "
        f"{NEIGHBOUR_WEIGHT:g} times that of the better of the turns just before and after it"
    )
    session_id: str | None
    turn_seqs: list[int] = Field(description="The turn, or first and last turn, the item comes from")
    timestamp: datetime | None
    excerpt: bool = Field(False, description="text is the passage of a longer item that fitted the budget")

    @classmethod
    def from_hit(cls, hit: SearchHit) -> RetrievedItem:
        """The API view of a search hit."""
        return cls(
            kind=hit.kind,
            text=hit.text,
            score=hit.score,
            session_id=hit.session_id,
            turn_seqs=list(hit.seqs),
            timestamp=hit.timestamp,
            excerpt=hit.excerpt,
        )


class RetrieveResponse(_Response):
    """Response of ``/memory/retrieve``: the guide's ``facts`` and ``count``, and ``items`` with provenance."""

    query: str
    facts: list[str]
    count: int
    items: list[RetrievedItem]
    tokens: int = Field(description="cl100k tokens of the returned texts together")


# -- insights and summaries -------------------------------------------------------------------------------------


class _Listing(_Request):
    @field_validator("limit", check_fields=False)
    @classmethod
    def _bounded_limit(cls, value: int, info: ValidationInfo) -> int:
        limit = _limit(info, "MAX_LIST_LIMIT")
        if value > limit:
            raise ValueError(f"must be at most {limit}")
        return value


class InsightsRequest(_Listing):
    """``POST /insights``."""

    user_id: Id
    recent_only: bool = Field(False, description="Only insights learned in the last M_SESSIONS_RECENT sessions")
    include_superseded: bool = Field(False, description="Also insights that stopped being true")
    limit: JsonInt = Field(
        100, ge=1, description="1 to MAX_LIST_LIMIT insights", json_schema_extra=_bounded_by("MAX_LIST_LIMIT")
    )


class InsightItem(_Response):
    """An insight with its provenance and validity."""

    id: str
    text: str
    key: str
    category: str
    status: Literal["active", "superseded"]
    source_session_id: str
    source_turns: list[int]
    valid_from: datetime
    valid_to: datetime | None
    superseded_by: str | None
    updated_at: datetime

    @classmethod
    def from_insight(cls, insight: Insight) -> InsightItem:
        """The API view of an insight."""
        return cls(
            **insight.model_dump(exclude={"user_id", "created_at", "source_turns"}),
            source_turns=list(insight.source_turns),
        )


class InsightsResponse(_Response):
    """Response of ``/insights``."""

    user_id: str
    insights: list[str]
    count: int
    items: list[InsightItem]


class SummariesRequest(_Listing):
    """``POST /summaries``."""

    user_id: Id
    limit: JsonInt = Field(
        5, ge=1, description="1 to MAX_LIST_LIMIT summaries", json_schema_extra=_bounded_by("MAX_LIST_LIMIT")
    )


class SummaryItem(_Response):
    """A session summary with its session and turn range."""

    session_id: str
    summary: str
    turn_count: int
    created_at: datetime

    @classmethod
    def from_summary(cls, summary: SessionSummary) -> SummaryItem:
        """The API view of a session summary."""
        return cls(
            session_id=summary.session_id,
            summary=summary.summary,
            turn_count=summary.turn_count,
            created_at=summary.created_at,
        )


class SummariesResponse(_Response):
    """Response of ``/summaries``."""

    user_id: str
    summaries: list[str]
    count: int
    items: list[SummaryItem]


# -- monitoring -------------------------------------------------------------------------------------------------


class StatsResponse(PoolStats):
    """Response of ``GET /stats``: the guide's seven figures of the hot pool, as ``memory_core.pool`` computes them."""

    model_config = ConfigDict(extra="forbid")


class UserSessions(_Response):
    """One user and their sessions, most recently active first."""

    user_id: str
    last_activity: datetime = Field(description="The last activity of the user's most recent session")
    sessions: list[SessionRecord]


class UsersResponse(_Response):
    """Response of ``GET /inspector/users``: the users of the most recently active sessions, newest first."""

    users: list[UserSessions]
    sessions: int = Field(description="How many sessions are listed")
    truncated: bool = Field(description="True when older sessions were left out (the listing holds the newest)")


class ForgetPending(_Response):
    """What of a forgotten user was still there when ``DELETE /users/{user_id}`` answered."""

    instances: int = Field(description="Orchestrations of the user still running, or finished too recently to purge")
    entities: int = Field(description="Session entities of the user whose deletion has not taken effect yet")


class ForgetResponse(_Response):
    """Response of ``DELETE /users/{user_id}``: the receipt of a forget, what was deleted by kind and what is pending.

    The counts are of what this call deleted (a repeat counts what was left). ``complete`` false: the forget goes on
    (the cleanup timer retries until nothing of the user remains, and the user's writes are refused until then).
    """

    user_id: str
    sessions: int = Field(description="Session records deleted")
    turns: int = Field(description="Turns deleted")
    chunks: int = Field(description="Compacted chunks deleted")
    summaries: int = Field(description="Session summaries deleted")
    insights: int = Field(description="Insights deleted")
    histories_purged: int = Field(description="Orchestration histories of the user that were purged")
    entities_deleted: int = Field(0, description="Session entities (hot sessions) of the user that were deleted")
    complete: bool = Field(
        True,
        description="True: nothing of the user remains and they may come back; false: see pending, and until it is "
        "complete the user's session starts and turns are refused (409)",
    )
    pending: ForgetPending = Field(
        default_factory=lambda: ForgetPending(instances=0, entities=0),
        description="What is still there; the cleanup timer deletes it once the work has ended",
    )
    began_at: datetime | None = Field(None, description="When the forget began: nothing is stored for the user after")


class HealthResponse(_Response):
    """Response of ``GET /health``."""

    status: Literal["healthy"]
    store: str
    llm: str
    embeddings: str


class ErrorResponse(_Response):
    """Body of every 4xx and 5xx answer."""

    error: str = Field(description="The error's class, e.g. ValidationError or SessionNotFoundError")
    detail: str
    field: str | None = None
