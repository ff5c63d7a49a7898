"""The Azure store: Cosmos DB for NoSQL through the async ``azure-cosmos`` SDK.

Three containers, each partitioned by ``/user_id`` so that every read, query and write stays inside one user's
partition:

* interactions: session records (``type: "session"``), turns (``"turn"``), chunks (``"chunk"``), plus metadata
  documents (``"meta"``) in a reserved partition no user id can name (``META_PARTITION``): the store's embedding
  identity and the last cleanup claim;
* session_summaries: one ``"summary"`` per session;
* insights: ``"insight"`` documents.

The stored-document shapes below (``SessionDocument``, ``TurnDocument``, ...) are this module's own: they carry
``schema_version``, ``type``, ``user_id`` and, for searchable items, ``text`` and the fields that queries filter or
order on. They are converted to and from the domain models here and nowhere else. Embeddings live in an
``embedding`` property that is never read back except for vector search.

A session record and its turns share the user's partition, so appending a turn is one transactional batch: the turn
is created and the record (with its ETag) replaced together, or neither is (``append_turn``). Every other change of a
record is an optimistic read-modify-replace with ``If-Match`` (``update_session``).

A pending forget is a ``"forget"`` document in the user's partition of interactions (``FORGET_ID``; it holds the user
id and when the forget began), and every session record of the user is then flagged ``forgetting``. A transactional
batch cannot require a document to be absent, but it can require the session record to be the one that was read
(If-Match), so a turn needs no extra read: an append reads the record, refuses a flagged one, and its batch fails
when the flag (or the record's deletion) came between the read and the write. A turn whose batch landed before the
flag was acknowledged while the forget was beginning; the forget's sweep, which lists the turns after deleting the
records, deletes it. A session start is checked after it lands: when the marker is there, the record it created is
deleted again and the start refused. A background write whose session record (``SessionGuard``) is gone or flagged
once it is written is undone. With the account's Strong consistency (the infrastructure's default) every listing
sees every write that came before it.

Search has two paths, chosen by settings: with ``COSMOS_VECTOR_SEARCH`` / ``COSMOS_FULL_TEXT_SEARCH`` on, the
account's ``VectorDistance`` and ``FullTextScore`` do the work; with them off (accounts without those features, and
the test emulator for full text), the adapter ranks the user's candidate documents in Python.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, TypeAlias, TypeVar

import numpy as np
from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import AzureError
from azure.cosmos import PartitionKey
from azure.cosmos.aio import ContainerProxy, CosmosClient, DatabaseProxy
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosBatchOperationError,
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)
from pydantic import BaseModel, ConfigDict, Field

from memory_core import session as rules
from memory_core.domain import (
    Chunk,
    Insight,
    InsightStatus,
    ItemFilter,
    JsonDict,
    MemoryKind,
    SearchHit,
    SessionRecord,
    SessionStatus,
    SessionSummary,
    Turn,
    stable_id,
    turn_doc_id,
)
from memory_core.errors import (
    ConfigurationError,
    EmbeddingDimensionMismatchError,
    SessionEndedError,
    SessionNotFoundError,
    UpstreamUnavailableError,
    UserForgettingError,
)
from memory_core.ports import (
    AppendOutcome,
    PendingForget,
    RecordChange,
    RecordUpdate,
    SessionFigures,
    SessionGuard,
    UserDeletion,
    UserExport,
    Vector,
)
from memory_core.session import TurnInput
from memory_core.text import content_words, date_words, is_word, query_terms

if TYPE_CHECKING:
    from memory_core.config import Settings

logger = logging.getLogger(__name__)

DOC_SCHEMA_VERSION = 1
# The reserved partition: no user id is this (ids hold no control characters), so no user's reads, forget or export
# reach the store's own documents. Partition key values are JSON strings; the containers' large partition keys
# (version 2) take values up to 2 KB, and an id (at most 256 characters, 1 KB of UTF-8) always fits.
META_PARTITION = "\x1fmeta"
META_ID = "embedding-identity"
CLEANUP_ID = "cleanup"  # the last cleanup claim (``claim_cleanup``), next to the embedding identity
FORGET_ID = "forget"  # a pending forget of the user, in the user's partition of interactions

# Throttling (429) and transient failures are retried by the SDK itself, configured on the client: up to
# ``retry_throttle_total`` retries of a throttled request, honouring the service's retry-after, for at most
# ``retry_throttle_backoff_max`` seconds in all; connection errors up to ``retry_total`` times. Writes may be retried
# too (``retry_write``): upserts and deletes by deterministic ids are idempotent, and the conditional writes (create
# only, replace If-Match, the append batch) stay safe: a retry of one that did land fails with 409 or 412 and the
# adapter then reads what is stored (so that write is reported as a duplicate, unchanged or unclaimed: never twice).
_RETRY_TOTAL = 3
_RETRY_THROTTLE_TOTAL = 9
_RETRY_THROTTLE_BACKOFF_MAX_SECONDS = 30
_MAX_PARALLEL_REQUESTS = 16  # fan-out of multi-document writes and deletes
# The full-text fallback ranks at most this many candidate documents per container: fine for the small memories of
# one user it is meant for, and a bound on the work one query can cause.
_FALLBACK_CANDIDATES = 1000
_BM25_K1 = 1.2
_BM25_B = 0.75
# Optimistic concurrency on a session record: a write that lost to another (412 on its If-Match) re-reads and tries
# again after a short jittered pause, at most this many times before the store is reported unavailable.
_MAX_WRITE_CONFLICTS = 20
_CONFLICT_PAUSE_SECONDS = 0.002  # doubled per conflict, at most _CONFLICT_PAUSE_MAX_SECONDS (full jitter)
_CONFLICT_PAUSE_MAX_SECONDS = 0.1
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_DocT = TypeVar("_DocT", bound="_Document")
_DomainModel: TypeAlias = type[BaseModel]  # an alias: documents have a field named "type"
_T = TypeVar("_T")


# -- stored documents -----------------------------------------------------------------------------------------------
def _utc(value: datetime) -> datetime:
    """The time in UTC (naive times are taken as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sort_key(value: datetime) -> str:
    """UTC ISO-8601 with a fixed width, so that string order is time order (naive times are taken as UTC)."""
    # isoformat pads the year to four digits, where strftime("%Y") does not on every platform (glibc: year 999 is
    # "999"), which would break both the fixed width and the order.
    return _utc(value).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _from_sort_key(value: str) -> datetime:
    return datetime.fromisoformat(value.removesuffix("Z")).replace(tzinfo=UTC)


def _epoch_seconds(value: datetime) -> float:
    return (_utc(value) - _UNIX_EPOCH).total_seconds()


def session_doc_id(user_id: str, session_id: str) -> str:
    """Deterministic id of a stored session record."""
    return stable_id("session", user_id, session_id)


class _Document(BaseModel):
    """What every stored document has. Unknown properties (``_etag``, ``_ts``, ``embedding``...) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    domain: ClassVar[_DomainModel]

    id: str
    user_id: str
    type: str
    schema_version: int = DOC_SCHEMA_VERSION

    def to_domain_dict(self) -> JsonDict:
        """The fields of the domain model this document stores."""
        return self.model_dump(include=set(self.domain.model_fields))


class _SearchableDocument(_Document):
    """A memory item that search can return: its text, provenance and the sort key of its time."""

    session_id: str | None
    text: str
    ts: str
    first_seq: int | None = None
    last_seq: int | None = None
    active: bool = True
    token_count: int = 0


class SessionDocument(_Document):
    """A session record (container: interactions)."""

    domain: ClassVar[_DomainModel] = SessionRecord
    type: Literal["session"] = "session"
    session_id: str
    status: SessionStatus
    started_at: datetime
    last_activity: datetime
    ts: str  # sort key of last_activity
    turn_count: int
    compacted_through: int
    cumulative_summary: str
    chunk_count: int
    indexed_through: int = 0
    indexed_ahead: tuple[tuple[int, int], ...] = ()
    ended_at: datetime | None = None
    reflected_at: datetime | None = None
    forgetting: bool = False  # the user's forget began: no turn is appended to this record any more
    # last_activity in seconds since the Unix epoch: what AVG needs for /stats' mean activity (AVG takes numbers only)
    activity_epoch: float | None = None

    @classmethod
    def from_domain(cls, record: SessionRecord) -> SessionDocument:
        """The document of a session record."""
        return cls.model_validate(
            {
                **record.model_dump(),
                "id": session_doc_id(record.user_id, record.session_id),
                "ts": _sort_key(record.last_activity),
                "activity_epoch": _epoch_seconds(record.last_activity),
            }
        )

    def to_domain(self) -> SessionRecord:
        """The session record this document stores."""
        return SessionRecord.model_validate(self.to_domain_dict())


class TurnDocument(_SearchableDocument):
    """One turn (container: interactions), keyed by its ``turn_id``; ``first_seq == last_seq == seq``."""

    domain: ClassVar[_DomainModel] = Turn
    type: Literal["turn"] = "turn"
    session_id: str
    seq: int
    turn_id: str
    user_message: str
    agent_message: str
    timestamp: datetime
    metadata: JsonDict = Field(default_factory=dict)
    # The turn's day in words ("8 May 2023"), searched by full text with its text; never returned as its text.
    # Turns written before this field existed have none and are found by their text alone.
    when_text: str = ""

    @classmethod
    def from_domain(cls, turn: Turn) -> TurnDocument:
        """The document of a turn."""
        text, when = turn.text(), date_words(turn.timestamp)
        return cls.model_validate(
            {
                **turn.model_dump(),
                "id": turn_doc_id(turn.user_id, turn.session_id, turn.turn_id),
                "text": text,
                "when_text": when,
                "ts": _sort_key(turn.timestamp),
                "first_seq": turn.seq,
                "last_seq": turn.seq,
                "token_count": len(content_words(text)) + len(content_words(when)),
            }
        )

    def to_domain(self) -> Turn:
        """The turn this document stores."""
        return Turn.model_validate(self.to_domain_dict())


class ChunkDocument(_SearchableDocument):
    """A chunk of compacted turns (container: interactions); ``text`` is its summary."""

    domain: ClassVar[_DomainModel] = Chunk
    type: Literal["chunk"] = "chunk"
    session_id: str
    index: int
    first_seq: int
    last_seq: int
    summary: str
    timestamp: datetime

    @classmethod
    def from_domain(cls, chunk: Chunk) -> ChunkDocument:
        """The document of a chunk."""
        return cls.model_validate(
            {
                **chunk.model_dump(),
                "id": chunk.id,
                "text": chunk.summary,
                "ts": _sort_key(chunk.timestamp),
                "token_count": len(content_words(chunk.summary)),
            }
        )

    def to_domain(self) -> Chunk:
        """The chunk this document stores."""
        return Chunk.model_validate(self.to_domain_dict())


class SummaryDocument(_SearchableDocument):
    """The summary of one session (container: session_summaries); ``text`` is the summary."""

    domain: ClassVar[_DomainModel] = SessionSummary
    type: Literal["summary"] = "summary"
    session_id: str
    summary: str
    turn_count: int
    first_seq: int
    last_seq: int
    created_at: datetime

    @classmethod
    def from_domain(cls, summary: SessionSummary) -> SummaryDocument:
        """The document of a session summary."""
        return cls.model_validate(
            {
                **summary.model_dump(),
                "id": summary.id,
                "text": summary.summary,
                "ts": _sort_key(summary.created_at),
                "token_count": len(content_words(summary.summary)),
            }
        )

    def to_domain(self) -> SessionSummary:
        """The session summary this document stores."""
        return SessionSummary.model_validate(self.to_domain_dict())


class InsightDocument(_SearchableDocument):
    """An insight (container: insights); ``session_id`` and the seqs are its source, ``ts`` its last update."""

    domain: ClassVar[_DomainModel] = Insight
    type: Literal["insight"] = "insight"
    key: str
    category: str
    source_session_id: str
    source_turns: tuple[int, ...] = ()
    status: InsightStatus
    valid_from: datetime
    valid_to: datetime | None = None
    superseded_by: str | None = None
    created_at: datetime
    updated_at: datetime
    # sort keys of the validity interval, which an ``as_of`` search compares in the query
    valid_from_ts: str
    valid_to_ts: str | None = None

    @classmethod
    def from_domain(cls, insight: Insight) -> InsightDocument:
        """The document of an insight."""
        return cls.model_validate(
            {
                **insight.model_dump(),
                "session_id": insight.source_session_id,
                "ts": _sort_key(insight.updated_at),
                "first_seq": min(insight.source_turns, default=None),
                "last_seq": max(insight.source_turns, default=None),
                "active": insight.status == "active",
                "token_count": len(content_words(insight.text)),
                "valid_from_ts": _sort_key(insight.valid_from),
                "valid_to_ts": None if insight.valid_to is None else _sort_key(insight.valid_to),
            }
        )

    def to_domain(self) -> Insight:
        """The insight this document stores."""
        return Insight.model_validate(self.to_domain_dict())


_KIND_TYPES: dict[type[_Document], str] = {
    SessionDocument: "session",
    TurnDocument: "turn",
    ChunkDocument: "chunk",
    SummaryDocument: "summary",
    InsightDocument: "insight",
}
_HIT_FIELDS = "c.id, c.type, c.text, c.session_id, c.first_seq, c.last_seq, c.ts"
# Full text searches a turn's date words too (``TurnDocument.when_text``); other documents have none.
_TEXT_PATHS = ("/text", "/when_text")
# What an as_of search keeps: insights valid at that time (superseded ones included), other items from before it.
_AS_OF = (
    "((c.type != 'insight' AND c.active = true AND c.ts <= @as_of) OR (c.type = 'insight' AND c.valid_from_ts <= "
    "@as_of AND (NOT IS_DEFINED(c.valid_to_ts) OR IS_NULL(c.valid_to_ts) OR c.valid_to_ts > @as_of)))"
)


def _search_where(where: ItemFilter | None) -> tuple[str, JsonDict]:
    """The WHERE clause of a search in the user's partition (``@user_id``, ``@types``) with ``where``'s parameters."""
    clauses = ["c.user_id = @user_id", "ARRAY_CONTAINS(@types, c.type)"]
    params: JsonDict = {}
    where = where or ItemFilter()
    if where.session_ids is not None:
        clauses.append("ARRAY_CONTAINS(@session_ids, c.session_id)")
        params["@session_ids"] = list(where.session_ids)
    if where.since is not None:
        clauses.append("c.ts >= @since")
        params["@since"] = _sort_key(where.since)
    if where.until is not None:
        clauses.append("c.ts < @until")
        params["@until"] = _sort_key(where.until)
    if where.as_of is not None:
        clauses.append(_AS_OF)
        params["@as_of"] = _sort_key(where.as_of)
    else:
        clauses.append("c.active = true")
    return "WHERE " + " AND ".join(clauses), params


def _top(limit: int) -> str:
    """``TOP n`` as a checked literal, as ranked (``ORDER BY RANK``, ``VectorDistance``) queries are written."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"TOP needs a positive integer, not {limit!r}")
    return f"TOP {limit}"


def _term_literal(term: str) -> str:
    """A query term as a string literal: ``FullTextScore`` takes literals only, so a term must be one word."""
    if not is_word(term):
        raise ValueError(f"not a single word: {term!r}")
    return f'"{term}"'


def _projection(doc_cls: type[_Document]) -> str:
    """``c.a, c.b, ...`` for the document's own fields: never the embedding, never system properties."""
    return ", ".join(f"c.{name}" for name in doc_cls.model_fields)


def _hit(row: JsonDict, score: float) -> SearchHit:
    first: int | None = row.get("first_seq")
    last: int | None = row.get("last_seq")
    seqs: tuple[int, ...] = ()
    if first is not None:
        seqs = (first,) if last is None or last == first else (first, last)
    return SearchHit(
        kind=MemoryKind(row["type"]),
        id=row["id"],
        text=row["text"],
        score=score,
        session_id=row.get("session_id"),
        seqs=seqs,
        timestamp=_from_sort_key(row["ts"]),
    )


def bm25_scores(
    docs: Sequence[str], terms: Sequence[str], doc_count: int, avg_len: float, doc_freq: dict[str, int] | None = None
) -> list[float]:
    """Okapi BM25 (k1=1.2, b=0.75) of each text for the query terms, over a corpus of ``doc_count`` documents.

    ``doc_freq`` defaults to the document frequencies within ``docs``, which is exact when ``docs`` holds every
    document that contains any of the terms.
    """
    tokenized = [Counter(content_words(d)) for d in docs]
    if doc_freq is None:
        doc_freq = {t: sum(1 for tf in tokenized if t in tf) for t in terms}
    n = max(doc_count, len(docs), 1)
    avg = avg_len if avg_len > 0 else 1.0
    idf = {t: math.log(1 + (n - doc_freq.get(t, 0) + 0.5) / (doc_freq.get(t, 0) + 0.5)) for t in terms}
    scores = []
    for tf in tokenized:
        length = sum(tf.values())
        norm = _BM25_K1 * (1 - _BM25_B + _BM25_B * length / avg)
        scores.append(sum(idf[t] * tf[t] * (_BM25_K1 + 1) / (tf[t] + norm) for t in terms if tf[t]))
    return scores


class _StoredSession(NamedTuple):
    """A session record as read, with what a conditional write of it needs."""

    record: SessionRecord
    etag: str
    forgetting: bool  # flagged by the user's forget


class _SessionLocks:
    """One FIFO lock per session record, held while this process writes it; dropped when nobody holds or awaits it.

    Writers of one record in one process then take turns instead of racing for its ETag (each loser would pay a 412,
    a re-read and a retry); writers in other processes are still met by If-Match and the retry.
    """

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, user_id: str, session_id: str) -> AsyncIterator[None]:
        key = (user_id, session_id)
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


# -- the store ------------------------------------------------------------------------------------------------------
class CosmosStore:
    """The ``Store`` port on Cosmos DB for NoSQL (three containers partitioned by ``/user_id``)."""

    def __init__(
        self,
        endpoint: str,
        credential: str | AsyncTokenCredential,
        *,
        database: str,
        interactions_container: str,
        summaries_container: str,
        insights_container: str,
        vector_search: bool,
        full_text_search: bool,
        endpoint_discovery: bool = True,
        owns_credential: bool = False,
    ) -> None:
        self._endpoint = endpoint
        self._credential = credential
        self._owns_credential = owns_credential
        self._database_name = database
        self._names = {"interactions": interactions_container, "summaries": summaries_container}
        self._names["insights"] = insights_container
        self._vector_search = vector_search
        self._full_text_search = full_text_search
        # Whether the turns' container has the full-text path of their date words (``_check_full_text_paths``).
        self._dated_full_text = True
        self._endpoint_discovery = endpoint_discovery
        self._client: CosmosClient | None = None
        self._containers: dict[str, ContainerProxy] = {}
        self._dimensions: int | None = None
        self._limit: asyncio.Semaphore | None = None
        self._session_locks = _SessionLocks()

    @classmethod
    def from_settings(cls, settings: Settings) -> CosmosStore:
        """A store configured from the app settings: the account key when set, else Entra ID (managed identity)."""
        if not settings.COSMOS_ENDPOINT:
            raise ConfigurationError("COSMOS_ENDPOINT is required for the Cosmos DB store", field="COSMOS_ENDPOINT")
        credential: str | AsyncTokenCredential
        if settings.COSMOS_KEY:
            credential = settings.COSMOS_KEY
        else:
            from azure.identity.aio import DefaultAzureCredential

            credential = DefaultAzureCredential(managed_identity_client_id=settings.AZURE_CLIENT_ID)
        return cls(
            settings.COSMOS_ENDPOINT,
            credential,
            database=settings.COSMOS_DATABASE_NAME,
            interactions_container=settings.COSMOS_INTERACTIONS_CONTAINER,
            summaries_container=settings.COSMOS_SUMMARIES_CONTAINER,
            insights_container=settings.COSMOS_INSIGHTS_CONTAINER,
            vector_search=settings.COSMOS_VECTOR_SEARCH,
            full_text_search=settings.COSMOS_FULL_TEXT_SEARCH,
            endpoint_discovery=settings.COSMOS_ENDPOINT_DISCOVERY,
            owns_credential=not settings.COSMOS_KEY,
        )

    # -- plumbing -------------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def _sdk_errors(self, operation: str) -> AsyncIterator[None]:
        """SDK failures (after the SDK's own retries) as ``UpstreamUnavailableError``, without document content."""
        try:
            yield
        except CosmosHttpResponseError as exc:
            logger.warning("Cosmos DB %s failed: status %s/%s", operation, exc.status_code, exc.sub_status)
            raise UpstreamUnavailableError(
                f"Cosmos DB {operation} failed (status {exc.status_code}, sub-status {exc.sub_status})"
            ) from None
        except AzureError as exc:
            logger.warning("Cosmos DB %s failed: %s", operation, type(exc).__name__)
            raise UpstreamUnavailableError(f"Cosmos DB {operation} failed ({type(exc).__name__})") from None

    def _container(self, name: str) -> ContainerProxy:
        try:
            return self._containers[name]
        except KeyError:
            raise RuntimeError("CosmosStore.open() was not called") from None

    def _container_of(self, doc_cls: type[_Document]) -> ContainerProxy:
        if doc_cls is SummaryDocument:
            return self._container("summaries")
        if doc_cls is InsightDocument:
            return self._container("insights")
        return self._container("interactions")

    async def _query(
        self, container: ContainerProxy, query: str, user_id: str, params: dict[str, Any] | None = None
    ) -> list[Any]:
        """Run a parameterised query inside the user's partition (the query filters on ``@user_id`` too)."""
        if "c.user_id = @user_id" not in query:
            raise AssertionError("every query must filter on c.user_id = @user_id")
        parameters: list[dict[str, object]] = [{"name": "@user_id", "value": user_id}]
        parameters += [{"name": name, "value": value} for name, value in (params or {}).items()]
        async with self._sdk_errors("query"):
            return [row async for row in container.query_items(query, parameters=parameters, partition_key=user_id)]

    async def _query_all_users(self, query: str, params: dict[str, Any]) -> list[Any]:
        """Run a parameterised query over the session records of every user: a cross-partition query.

        Only the admin and timer paths use it (the cleanup timer's scan, ``/stats``), never a request path: it fans
        out to every physical partition and costs RUs in proportion to the container, not to one user.
        """
        if "c.type = 'session'" not in query and "c.type = 'forget'" not in query:
            raise AssertionError("a cross-partition query must stay on session records (or pending forgets)")
        parameters = [{"name": name, "value": value} for name, value in params.items()]
        container = self._container("interactions")
        async with self._sdk_errors("query"):
            # No partition key: the SDK queries every partition key range and merges the results (ORDER BY, TOP and
            # aggregates through the query plan it asks the gateway for).
            return [row async for row in container.query_items(query, parameters=parameters)]

    async def _find(
        self,
        doc_cls: type[_DocT],
        user_id: str,
        where: str = "",
        params: dict[str, Any] | None = None,
        order_by: str = "",
        top: int | None = None,
    ) -> list[_DocT]:
        """Documents of one type of the user. ``where``/``order_by`` are constant SQL with @placeholders only."""
        query = (
            f"SELECT {'TOP @top ' if top is not None else ''}{_projection(doc_cls)} FROM c "  # noqa: S608 - no values
            f"WHERE c.user_id = @user_id AND c.type = @type{where}{' ORDER BY ' + order_by if order_by else ''}"
        )
        values = {"@type": _KIND_TYPES[doc_cls], **(params or {})}
        if top is not None:
            values["@top"] = top
        rows = await self._query(self._container_of(doc_cls), query, user_id, values)
        return [doc_cls.model_validate(row) for row in rows]

    async def _read(self, container: ContainerProxy, item_id: str, partition: str) -> JsonDict | None:
        async with self._sdk_errors("read"):
            try:
                item: JsonDict = await container.read_item(item_id, partition_key=partition)
            except CosmosResourceNotFoundError:
                return None
            return item

    async def _read_session(self, user_id: str, session_id: str) -> _StoredSession | None:
        """The session record, the ETag of its document and whether it is flagged ``forgetting``; or None."""
        row = await self._read(self._container("interactions"), session_doc_id(user_id, session_id), user_id)
        if row is None:
            return None
        doc = SessionDocument.model_validate(row)
        return _StoredSession(doc.to_domain(), str(row["_etag"]), doc.forgetting)

    async def _replace_session(self, record: SessionRecord, etag: str, *, forgetting: bool = False) -> bool:
        """Replace the session document if it still has ``etag``; False when another write (or a delete) came first."""
        doc = SessionDocument.from_domain(record).model_copy(update={"forgetting": forgetting})
        async with self._sdk_errors("replace"):
            try:
                await self._container("interactions").replace_item(
                    doc.id, doc.model_dump(mode="json"), etag=etag, match_condition=MatchConditions.IfNotModified
                )
            except (CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
                return False
            return True

    @staticmethod
    async def _pause_after_conflict(attempt: int) -> None:
        """Wait a little before re-reading a record another writer changed (exponential back-off, full jitter)."""
        ceiling = min(_CONFLICT_PAUSE_MAX_SECONDS, _CONFLICT_PAUSE_SECONDS * 2**attempt)
        await asyncio.sleep(random.uniform(0, ceiling))  # jitter, not cryptography

    @staticmethod
    def _too_many_conflicts(operation: str) -> UpstreamUnavailableError:
        logger.warning("Cosmos DB %s: gave up after %d write conflicts", operation, _MAX_WRITE_CONFLICTS)
        return UpstreamUnavailableError(
            f"Cosmos DB {operation} of a session record lost to concurrent writes {_MAX_WRITE_CONFLICTS} times"
        )

    async def _bounded(self, work: Awaitable[_T]) -> _T:
        if self._limit is None:
            raise RuntimeError("CosmosStore.open() was not called")
        async with self._limit:
            return await work

    async def _write(self, doc: _Document, embedding: Vector | None = None, *, keep_embedding: bool = True) -> None:
        """Upsert a document. Without a new embedding, the one already stored with the document is kept."""
        container = self._container_of(type(doc))
        body = doc.model_dump(mode="json")
        if embedding is not None:
            body["embedding"] = [float(x) for x in embedding]
        elif keep_embedding:
            # Read-then-upsert: a concurrent writer of the same id with another embedding may win; both come from the
            # same text, so either vector is right.
            existing = await self._read(container, doc.id, doc.user_id)
            if existing is not None and "embedding" in existing:
                body["embedding"] = existing["embedding"]
        async with self._sdk_errors("upsert"):
            await container.upsert_item(body)

    async def _gather(self, works: Sequence[Awaitable[_T]]) -> list[_T]:
        return list(await asyncio.gather(*(self._bounded(w) for w in works)))

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def _container_policies(self, dimensions: int | None) -> dict[str, Any]:
        indexing: dict[str, Any] = {
            "indexingMode": "consistent",
            "automatic": True,
            "includedPaths": [{"path": "/*"}],
            "excludedPaths": [{"path": '/"_etag"/?'}, {"path": "/embedding/*"}],
            # newest first with a stable tie-break (summaries, insights): a two-property ORDER BY needs this index
            "compositeIndexes": [[{"path": "/ts", "order": "descending"}, {"path": "/id", "order": "ascending"}]],
        }
        policies: dict[str, Any] = {"indexing_policy": indexing}
        if self._vector_search and dimensions:
            policies["vector_embedding_policy"] = {
                "vectorEmbeddings": [
                    {
                        "path": "/embedding",
                        "dataType": "float32",
                        "distanceFunction": "cosine",
                        "dimensions": dimensions,
                    }
                ]
            }
            indexing["vectorIndexes"] = [{"path": "/embedding", "type": "quantizedFlat"}]
        if self._full_text_search:
            policies["full_text_policy"] = {
                "defaultLanguage": "en-US",
                "fullTextPaths": [{"path": path, "language": "en-US"} for path in _TEXT_PATHS],
            }
            indexing["fullTextIndexes"] = [{"path": path} for path in _TEXT_PATHS]
        return policies

    async def _ensure_container(self, database: DatabaseProxy, name: str, dimensions: int | None) -> ContainerProxy:
        try:
            # Policies apply only when the container is created here; containers that infra created are used as is.
            container: ContainerProxy = await database.create_container_if_not_exists(
                name, partition_key=PartitionKey(path="/user_id"), **self._container_policies(dimensions)
            )
            return container
        except CosmosHttpResponseError as exc:
            if exc.status_code == 403:
                raise ConfigurationError(
                    f"Cosmos DB container {name!r} of database {self._database_name!r} is missing and this identity "
                    "may not create it (data-plane roles cannot); create it with the infrastructure templates"
                ) from None
            raise

    async def open(self, embedding_model: str | None, dimensions: int | None) -> None:
        """Create the database and containers if missing, and check the embedding identity."""
        if self._client is None:
            self._limit = asyncio.Semaphore(_MAX_PARALLEL_REQUESTS)
            self._client = CosmosClient(
                self._endpoint,
                credential=self._credential,
                enable_endpoint_discovery=self._endpoint_discovery,
                retry_total=_RETRY_TOTAL,
                retry_throttle_total=_RETRY_THROTTLE_TOTAL,
                retry_throttle_backoff_max=_RETRY_THROTTLE_BACKOFF_MAX_SECONDS,
                retry_write=True,
            )
        async with self._sdk_errors("open"):
            try:
                database = await self._client.create_database_if_not_exists(self._database_name)
            except CosmosHttpResponseError as exc:
                if exc.status_code != 403:
                    raise
                raise ConfigurationError(
                    f"Cosmos DB database {self._database_name!r} is missing and this identity may not create it; "
                    "create it with the infrastructure templates"
                ) from None
            for key, name in self._names.items():
                self._containers[key] = await self._ensure_container(database, name, dimensions)
        if self._full_text_search:
            await self._check_full_text_paths()
        if embedding_model is None or dimensions is None:
            return  # no embedder: vectors stored earlier stay, vector search is not used
        await self._check_embedding_identity(embedding_model, dimensions)
        self._dimensions = dimensions

    async def _check_full_text_paths(self) -> None:
        """Search turns' date words by full text only where their container's full-text policy has the path.

        A container created by an earlier version (or its templates) has ``/text`` alone, and ``FullTextScore`` on
        a path outside the policy is not what the account indexes: such a container keeps the text-only query and
        says so once. Reading a container's properties needs ``readMetadata``, which both built-in data-plane roles
        grant (Learn, "Use data plane role-based access control with Azure Cosmos DB for NoSQL").
        """
        async with self._sdk_errors("read container"):
            properties = await self._container("interactions").read()
        policy = properties.get("fullTextPolicy") or {}
        self._dated_full_text = _TEXT_PATHS[1] in {p.get("path") for p in policy.get("fullTextPaths", [])}
        if not self._dated_full_text:
            logger.warning(
                "Cosmos DB container %r has no full-text path %s (made by an earlier version): turns are found by "
                "their text but not their date words until the container's full-text policy has it (infra/bicep)",
                self._names["interactions"],
                _TEXT_PATHS[1],
            )

    async def _check_embedding_identity(self, model: str, dimensions: int) -> None:
        container = self._container("interactions")
        meta = await self._read(container, META_ID, META_PARTITION)
        if meta is None:
            body = {
                "id": META_ID,
                "user_id": META_PARTITION,
                "type": "meta",
                "schema_version": DOC_SCHEMA_VERSION,
                "embedding_model": model,
                "embedding_dimensions": dimensions,
            }
            async with self._sdk_errors("create"):
                try:
                    await container.create_item(body)
                except CosmosResourceExistsError:
                    body = {}  # another worker recorded the identity first: compare with theirs
            meta = body or await self._read(container, META_ID, META_PARTITION) or {}
        stored_model, stored_dims = meta.get("embedding_model"), meta.get("embedding_dimensions")
        if stored_model != model or stored_dims != dimensions:
            raise EmbeddingDimensionMismatchError(
                f"The Cosmos DB database {self._database_name!r} holds embeddings of model {stored_model!r} with "
                f"{stored_dims} dimensions, but the configured embedder is {model!r} with {dimensions}. "
                "Use the same embedder, or another COSMOS_DATABASE_NAME."
            )
        if self._vector_search:
            for name in ("interactions", "summaries", "insights"):
                async with self._sdk_errors("read container"):
                    properties = await self._container(name).read()
                policy = properties.get("vectorEmbeddingPolicy") or {}
                for vector in policy.get("vectorEmbeddings", []):
                    if vector.get("path") == "/embedding" and vector.get("dimensions") != dimensions:
                        raise EmbeddingDimensionMismatchError(
                            f"Cosmos DB container {self._names[name]!r} indexes vectors of {vector.get('dimensions')} "
                            f"dimensions, but the configured embedder {model!r} has {dimensions}."
                        )

    async def close(self) -> None:
        """Close the client (and the credential when the store created it)."""
        if self._client is not None:
            await self._client.close()
            self._client = None
            self._containers = {}
        if self._owns_credential and isinstance(self._credential, AsyncTokenCredential):
            await self._credential.close()

    # -- sessions -------------------------------------------------------------------------------------------------
    async def put_session(self, record: SessionRecord) -> None:
        """Insert or replace a session record."""
        await self._write(SessionDocument.from_domain(record), keep_embedding=False)

    async def create_session(self, record: SessionRecord) -> bool:
        """Insert a session record unless one with its id exists (409 from Cosmos DB); False when it did.

        Then the user's pending forget is looked for: when there is one, a record this call created is deleted
        again and ``UserForgettingError`` raised (a forget that began later deletes the record itself).
        """
        body = SessionDocument.from_domain(record).model_dump(mode="json")
        async with self._sdk_errors("create"):
            try:
                await self._container("interactions").create_item(body)
                created = True
            except CosmosResourceExistsError:
                created = False
        if await self._forgetting(record.user_id):
            if created:
                await self._delete(self._container("interactions"), body["id"], record.user_id)
            raise UserForgettingError(record.user_id)
        return created

    async def get_session(self, user_id: str, session_id: str) -> SessionRecord | None:
        """One session record, or None."""
        current = await self._read_session(user_id, session_id)
        return None if current is None else current.record

    async def update_session(self, user_id: str, session_id: str, change: RecordChange) -> RecordUpdate:
        """Apply a pure transition to the current record: read it with its ETag, replace it with If-Match.

        A 412 (another write came between the read and the replace) re-reads and applies ``change`` again, after a
        short jittered pause, up to ``_MAX_WRITE_CONFLICTS`` times; then ``UpstreamUnavailableError``.
        """
        async with self._session_locks.hold(user_id, session_id):
            for attempt in range(_MAX_WRITE_CONFLICTS):
                current = await self._read_session(user_id, session_id)
                if current is None:
                    return RecordUpdate(record=None, changed=False)
                record, etag, forgetting = current
                changed = change(record)
                if changed is None:
                    return RecordUpdate(record=record, changed=False)
                if await self._replace_session(changed, etag, forgetting=forgetting):  # the flag stays
                    return RecordUpdate(record=changed, changed=True)
                await self._pause_after_conflict(attempt)
        raise self._too_many_conflicts("update")

    async def append_turn(self, user_id: str, session_id: str, turn: TurnInput, now: datetime) -> AppendOutcome:
        """Store the turn with the next seq and count it in the session record, in one transactional batch.

        Each attempt reads the record with its ETag, numbers the turn (``rules.append``) and sends one batch in the
        user's partition: create the turn document (its id is the turn_id's), replace the record If-Match that ETag.
        A 409 on the create means the turn_id is stored: that turn is the answer (a duplicate), after
        ``rules.ensure_same_turn``. A 412 on the replace means another append (or update) won: read and try again.

        A record flagged by the user's forget refuses the turn (``UserForgettingError``), and so does a record that
        is gone while the forget is pending; no other read is needed (see the module's docstring).
        """
        try:
            return await self._append(user_id, session_id, turn, now)
        except SessionNotFoundError:
            if await self._forgetting(user_id):
                raise UserForgettingError(user_id) from None
            raise

    async def _append(self, user_id: str, session_id: str, turn: TurnInput, now: datetime) -> AppendOutcome:
        async with self._session_locks.hold(user_id, session_id):
            for attempt in range(_MAX_WRITE_CONFLICTS):
                outcome = await self._try_append(user_id, session_id, turn, now)
                if outcome is not None:
                    return outcome
                await self._pause_after_conflict(attempt)
        raise self._too_many_conflicts("append")

    async def _try_append(self, user_id: str, session_id: str, turn: TurnInput, now: datetime) -> AppendOutcome | None:
        """One attempt of ``append_turn``: its outcome, or None when another write won the record (try again)."""
        current = await self._read_session(user_id, session_id)
        if current is None:
            raise SessionNotFoundError(user_id, session_id)
        record, etag, forgetting = current
        if forgetting:
            raise UserForgettingError(user_id)  # even a repeat: nothing of the user is answered any more
        try:
            updated, stored = rules.append(record, turn, now)
        except SessionEndedError:
            # A repeat of a turn stored before the end is still that turn; anything else is refused.
            repeat = await self._repeated_turn(user_id, session_id, turn)
            if repeat is None:
                raise
            return AppendOutcome(turn=repeat, duplicate=True, record=record)
        failed = await self._append_batch(stored, updated, etag)
        if failed is None:
            return AppendOutcome(turn=stored, duplicate=False, record=updated)
        if failed == 409:
            repeat = await self._repeated_turn(user_id, session_id, turn)
            if repeat is not None:
                # The record as it is now: it counts the stored turn (the record read above may predate it).
                latest = await self._read_session(user_id, session_id)
                return AppendOutcome(turn=repeat, duplicate=True, record=latest.record if latest else record)
        return None  # 412 (or a turn deleted since its 409): read again

    async def _repeated_turn(self, user_id: str, session_id: str, turn: TurnInput) -> Turn | None:
        """The turn stored under ``turn.turn_id`` if it has the same content (else ``ConflictError``), or None."""
        stored = await self.get_turn(user_id, session_id, turn.turn_id)
        if stored is not None:
            rules.ensure_same_turn(stored, turn)
        return stored

    async def _append_batch(self, turn: Turn, record: SessionRecord, etag: str) -> int | None:
        """Create the turn and replace its session record (If-Match ``etag``) atomically; the failing status or None.

        Learn, "Transactional batch operations in Azure Cosmos DB": the operations of one batch share a logical
        partition (here the user's: the record and its turns are both in ``interactions`` under ``/user_id``) and
        are committed all together or not at all. When one fails, it carries its own status and every other
        operation 424 (Failed Dependency); the SDK raises ``CosmosBatchOperationError`` with that operation's
        index and status. Ops run in order, so a stored turn_id answers 409 even when the ETag is stale too.
        """
        turn_body = TurnDocument.from_domain(turn).model_dump(mode="json")
        record_body = SessionDocument.from_domain(record).model_dump(mode="json")
        operations: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
            ("create", (turn_body,), {}),
            ("replace", (record_body["id"], record_body), {"if_match_etag": etag}),
        ]
        async with self._sdk_errors("append"):
            try:
                await self._container("interactions").execute_item_batch(operations, partition_key=record.user_id)
            except CosmosBatchOperationError as exc:
                status = int(exc.status_code or 0)
                # 409: the turn_id is stored. 412: the record changed since it was read; 404: it was deleted (the
                # next read says so). Anything else is a failure of the store.
                if (exc.error_index, status) in ((0, 409), (1, 412), (1, 404)):
                    return status
                logger.warning("Cosmos DB append failed: operation %s, status %s", exc.error_index, status)
                raise UpstreamUnavailableError(f"Cosmos DB append failed (status {status})") from None
            return None

    async def list_sessions(
        self, user_id: str, status: SessionStatus | None = None, limit: int | None = 100
    ) -> list[SessionRecord]:
        """The user's sessions, most recently active first (``limit`` None: every one, page after page)."""
        if limit is not None and limit <= 0:
            return []
        where, params = ("", {}) if status is None else (" AND c.status = @status", {"@status": status.value})
        docs = await self._find(SessionDocument, user_id, where, params, order_by="c.ts DESC", top=limit)
        return [d.to_domain() for d in docs]

    # -- every user's sessions: the cleanup timer and /stats ------------------------------------------------------
    # These are cross-partition queries (``_query_all_users``): admin and timer paths only, never a request path.
    @staticmethod
    def _status_filter(status: SessionStatus) -> tuple[str, dict[str, Any]]:
        return "c.type = 'session' AND c.status = @status", {"@status": status.value}

    async def scan_sessions(
        self,
        status: SessionStatus,
        *,
        idle_before: datetime | None = None,
        lagging_by: int | None = None,
        unreflected: bool = False,
        limit: int = 100,
    ) -> list[SessionRecord]:
        """Sessions of every user with ``status``, least recently active first (a cross-partition query)."""
        if limit <= 0:
            return []
        where, params = self._status_filter(status)
        if idle_before is not None:
            where += " AND c.ts < @idle_before"
            params["@idle_before"] = _sort_key(idle_before)
        if lagging_by is not None:
            where += " AND c.turn_count - c.indexed_through >= @lagging_by"
            params["@lagging_by"] = lagging_by
        if unreflected:
            where += " AND (NOT IS_DEFINED(c.reflected_at) OR IS_NULL(c.reflected_at))"
        query = f"SELECT TOP @top {_projection(SessionDocument)} FROM c WHERE {where} ORDER BY c.ts ASC"  # noqa: S608
        rows = await self._query_all_users(query, {**params, "@top": limit})
        return [SessionDocument.model_validate(row).to_domain() for row in rows]

    async def recent_sessions(self, limit: int = 100) -> list[SessionRecord]:
        """Sessions of every user, whatever their status, most recently active first (a cross-partition query)."""
        if limit <= 0:
            return []
        query = f"SELECT TOP @top {_projection(SessionDocument)} FROM c WHERE c.type = 'session' ORDER BY c.ts DESC"  # noqa: S608
        rows = await self._query_all_users(query, {"@top": limit})
        return [SessionDocument.model_validate(row).to_domain() for row in rows]

    async def session_figures(self, status: SessionStatus, lagging_by: int) -> SessionFigures:
        """Count and activity of every user's sessions with ``status`` (cross-partition aggregates).

        One aggregate per query, each ``SELECT VALUE``: across partitions the SDK combines the partitions' partial
        aggregates, and it supports a single VALUE aggregate (it does not announce ``MultipleAggregates``).
        """
        where, params = self._status_filter(status)
        lag = " AND c.turn_count - c.indexed_through >= @lagging_by"
        count, lagging, oldest, mean = await asyncio.gather(
            self._query_all_users(f"SELECT VALUE COUNT(1) FROM c WHERE {where}", params),  # noqa: S608
            self._query_all_users(
                f"SELECT VALUE COUNT(1) FROM c WHERE {where}{lag}",  # noqa: S608
                {**params, "@lagging_by": lagging_by},
            ),
            self._query_all_users(f"SELECT VALUE MIN(c.ts) FROM c WHERE {where}", params),  # noqa: S608
            self._query_all_users(f"SELECT VALUE AVG(c.activity_epoch) FROM c WHERE {where}", params),  # noqa: S608
        )

        def value(rows: list[Any]) -> Any:
            # An aggregate over no documents is undefined: no row at all (Azure), or a null one.
            return rows[0] if rows else None

        oldest_key, mean_epoch = value(oldest), value(mean)
        return SessionFigures(
            count=int(value(count) or 0),
            lagging=int(value(lagging) or 0),
            oldest_activity=_from_sort_key(oldest_key) if oldest_key is not None else None,
            mean_activity=_UNIX_EPOCH + timedelta(seconds=mean_epoch) if mean_epoch is not None else None,
        )

    async def claim_cleanup(self, now: datetime, interval_seconds: float) -> bool:
        """True, and remember ``now``, when no cleanup was claimed in the last ``interval_seconds``.

        The claim is a meta document in the reserved partition, created if missing and otherwise replaced If-Match
        the ETag it was read with: of concurrent claimers exactly one writes (the others get 409 or 412).
        """
        container = self._container("interactions")
        body = {
            "id": CLEANUP_ID,
            "user_id": META_PARTITION,
            "type": "meta",
            "schema_version": DOC_SCHEMA_VERSION,
            "claimed_at": _sort_key(now),
        }
        claimed = await self._read(container, CLEANUP_ID, META_PARTITION)
        async with self._sdk_errors("claim"):
            try:
                if claimed is None:
                    await container.create_item(body)
                    return True
                if (_utc(now) - _from_sort_key(claimed["claimed_at"])).total_seconds() < interval_seconds:
                    return False
                await container.replace_item(
                    CLEANUP_ID, body, etag=claimed["_etag"], match_condition=MatchConditions.IfNotModified
                )
                return True
            except (CosmosResourceExistsError, CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
                return False  # another claimer wrote first

    # -- turns and chunks -----------------------------------------------------------------------------------------
    async def put_turns(self, turns: Sequence[Turn], embeddings: Sequence[Vector | None] | None = None) -> None:
        """Upsert turns by (user, session, turn_id); an embedding (when given) is stored with its turn.

        Without an embedding, the one stored with the turn is kept.
        """
        vectors = list(embeddings) if embeddings is not None else [None] * len(turns)
        pairs = list(zip(turns, vectors, strict=True))
        await self._gather([self._write(TurnDocument.from_domain(t), v) for t, v in pairs])

    async def set_turn_vectors(
        self, turns: Sequence[Turn], vectors: Sequence[Vector], *, guard: SessionGuard | None = None
    ) -> int:
        """Add each stored turn's vector with a partial update (patch ``/embedding``): a missing turn stays missing.

        With a guard: nothing when the session is gone before, and the vectors are removed again when it is gone after.
        """
        pairs = list(zip(turns, vectors, strict=True))
        if not pairs or (guard is not None and not await self._holds(guard)):
            return 0
        done = await self._gather([self._patch_vector(t, v) for t, v in pairs])
        if not await self._kept(guard, {t.user_id for t in turns}):
            patched = [t for t, ok in zip(turns, done, strict=True) if ok]
            await self._gather([self._patch_vector(t, None) for t in patched])
            return 0
        return sum(done)

    async def _patch_vector(self, turn: Turn, vector: Vector | None) -> bool:
        """Set the turn's vector (None: remove it); False when the turn is not stored."""
        container = self._container("interactions")
        operations: list[dict[str, Any]] = (
            [{"op": "remove", "path": "/embedding"}]
            if vector is None
            else [{"op": "set", "path": "/embedding", "value": [float(x) for x in vector]}]
        )
        async with self._sdk_errors("patch"):
            try:
                await container.patch_item(
                    turn_doc_id(turn.user_id, turn.session_id, turn.turn_id),
                    partition_key=turn.user_id,
                    patch_operations=operations,
                )
            except CosmosResourceNotFoundError:
                return False  # deleted meanwhile (the user was forgotten): never written back
            except CosmosHttpResponseError as exc:
                if vector is None and exc.status_code == 400:
                    return False  # no vector to remove
                raise
            return True

    # -- checks of a write against a forget -----------------------------------------------------------------------
    async def _forgetting(self, user_id: str) -> bool:
        """Whether the user's forget is pending (a point read of the marker)."""
        return await self._read(self._container("interactions"), FORGET_ID, user_id) is not None

    async def _holds(self, guard: SessionGuard) -> bool:
        """Whether the guarded session still exists (the same start of it) and its user's forget has not begun."""
        current = await self._read_session(guard.user_id, guard.session_id)
        return current is not None and not current.forgetting and guard.holds(current.record)

    async def _kept(self, guard: SessionGuard | None, user_ids: set[str]) -> bool:
        """Whether a write that just landed may stay: its session exists (guarded), or no forget of its users began."""
        if guard is not None:
            return await self._holds(guard)
        for user_id in user_ids:
            if await self._forgetting(user_id):
                return False
        return True

    async def _write_checked(self, docs: Sequence[tuple[_Document, Vector | None]], guard: SessionGuard | None) -> bool:
        """Upsert documents of one user unless their session is gone (guard); undo them if it is gone once written."""
        if not docs:
            return True
        if guard is not None and not await self._holds(guard):
            return False
        await self._gather([self._write(doc, vector) for doc, vector in docs])
        if await self._kept(guard, {doc.user_id for doc, _ in docs}):
            return True
        await self._gather([self._delete(self._container_of(type(doc)), doc.id, doc.user_id) for doc, _ in docs])
        return False

    async def get_turns(
        self, user_id: str, session_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[Turn]:
        """The session's turns with seq > after_seq, in seq order."""
        if limit is not None and limit <= 0:
            return []
        where = " AND c.session_id = @session_id AND c.seq > @after_seq"
        params = {"@session_id": session_id, "@after_seq": after_seq}
        docs = await self._find(TurnDocument, user_id, where, params, order_by="c.seq ASC", top=limit)
        return [d.to_domain() for d in docs]

    async def get_turn(self, user_id: str, session_id: str, turn_id: str) -> Turn | None:
        """The session's turn stored under ``turn_id`` (a point read), or None."""
        row = await self._read(self._container("interactions"), turn_doc_id(user_id, session_id, turn_id), user_id)
        return None if row is None else TurnDocument.model_validate(row).to_domain()

    async def put_chunk(
        self, chunk: Chunk, embedding: Vector | None = None, *, guard: SessionGuard | None = None
    ) -> bool:
        """Upsert a chunk by (user, session, index); checked against its session (guard) or a pending forget."""
        return await self._write_checked([(ChunkDocument.from_domain(chunk), embedding)], guard)

    async def get_chunks(self, user_id: str, session_id: str) -> list[Chunk]:
        """The session's chunks in order."""
        docs = await self._find(
            ChunkDocument, user_id, " AND c.session_id = @session_id", {"@session_id": session_id}, "c.first_seq ASC"
        )
        return [d.to_domain() for d in docs]

    # -- summaries and insights -----------------------------------------------------------------------------------
    async def put_summary(
        self, summary: SessionSummary, embedding: Vector | None = None, *, guard: SessionGuard | None = None
    ) -> bool:
        """Upsert the one summary of a session; checked against its session (guard) or a pending forget."""
        return await self._write_checked([(SummaryDocument.from_domain(summary), embedding)], guard)

    async def get_summaries(self, user_id: str, limit: int = 5) -> list[SessionSummary]:
        """The user's session summaries, newest first."""
        if limit <= 0:
            return []
        docs = await self._find(SummaryDocument, user_id, order_by="c.ts DESC, c.id ASC", top=limit)
        return [d.to_domain() for d in docs]

    async def put_insights(
        self,
        insights: Sequence[Insight],
        embeddings: Sequence[Vector | None] | None = None,
        *,
        guard: SessionGuard | None = None,
    ) -> bool:
        """Upsert insights by id; checked against the session they come from (guard) or a pending forget."""
        vectors = list(embeddings) if embeddings is not None else [None] * len(insights)
        pairs = list(zip(insights, vectors, strict=True))
        return await self._write_checked([(InsightDocument.from_domain(i), v) for i, v in pairs], guard)

    async def get_insights(
        self, user_id: str, include_superseded: bool = False, limit: int | None = 100
    ) -> list[Insight]:
        """The user's insights, most recently updated first (``limit`` None: every one, page after page)."""
        if limit is not None and limit <= 0:
            return []
        where = "" if include_superseded else " AND c.active = true"
        docs = await self._find(InsightDocument, user_id, where, order_by="c.ts DESC, c.id ASC", top=limit)
        return [d.to_domain() for d in docs]

    # -- search ---------------------------------------------------------------------------------------------------
    def _kind_groups(self, kinds: Sequence[MemoryKind]) -> list[tuple[ContainerProxy, list[str]]]:
        """The containers that hold the wanted kinds, each with the document types to look for in it."""
        groups: dict[str, list[str]] = {}
        for kind in dict.fromkeys(kinds):
            name = {MemoryKind.SUMMARY: "summaries", MemoryKind.INSIGHT: "insights"}.get(kind, "interactions")
            groups.setdefault(name, []).append(kind.value)
        return [(self._container(name), types) for name, types in groups.items()]

    async def search_text(
        self, user_id: str, query: str, kinds: Sequence[MemoryKind], limit: int, where: ItemFilter | None = None
    ) -> list[SearchHit]:
        """Full-text (BM25) search over the user's memory; best first, score higher is better.

        With full-text search on, the account's ``FullTextScore`` picks and orders each container's best matches
        (``ORDER BY RANK`` accepts the function but cannot project its score); otherwise the candidates are the
        documents whose lower-cased text contains a query word. Either way the adapter scores the candidates with
        BM25 over the user's searched documents, so hits from different containers compare. ``where`` is part of
        every query's WHERE clause, inside the user's partition.
        """
        terms = query_terms(query)
        if not terms or not kinds or limit <= 0:
            return []
        base, filter_params = _search_where(where)
        count_sql = f"SELECT VALUE COUNT(1) FROM c {base}"  # noqa: S608 - constant SQL
        length_sql = f"SELECT VALUE SUM(c.token_count) FROM c {base}"  # noqa: S608 - constant SQL
        queries = []
        for container, types in self._kind_groups(kinds):
            params = {"@types": types, **filter_params}
            dated = "turn" in types and self._dated_full_text
            candidates_sql, term_params = self._text_candidates_sql(base, terms, limit, dated=dated)
            queries += [
                self._query(container, candidates_sql, user_id, {**params, **term_params}),
                self._query(container, count_sql, user_id, params),
                self._query(container, length_sql, user_id, params),
            ]
        results = await asyncio.gather(*queries)
        rows: list[JsonDict] = [row for i in range(0, len(results), 3) for row in results[i]]
        doc_count = sum(int(r[0]) for r in results[1::3] if r)
        total_len = sum(int(r[0]) for r in results[2::3] if r and r[0] is not None)
        if not rows:
            return []
        searched = [f"{r['text']} {r.get('when_text') or ''}" for r in rows]
        scores = bm25_scores(searched, terms, doc_count, total_len / max(doc_count, 1))
        hits = [_hit(row, score) for row, score in zip(rows, scores, strict=True)]
        if not self._full_text_search:
            hits = [h for h in hits if h.score > 0]  # substring matches that are no whole word
        hits.sort(key=lambda h: -h.score)  # stable: FullTextScore order breaks ties
        return hits[:limit]

    def _text_candidates_sql(
        self, base: str, terms: Sequence[str], limit: int, dated: bool = False
    ) -> tuple[str, JsonDict]:
        """The query for full-text candidates, and its term parameters; ``dated``: turns' date words count too.

        With the account's full-text search (Azure only: ``FullTextContainsAny``/``FullTextScore`` need the
        feature and a full-text index on /text; the test server cannot run this path), ``FullTextScore`` takes its
        terms as string literals (Learn, .NET SDK reference of ``CosmosLinqExtensions.FullTextScore``: "A nonempty
        array of string literals"), and ``TOP`` of an ``ORDER BY RANK`` query is written as a literal as in every
        example of Learn's ``FULLTEXTSCORE`` reference (``SELECT TOP 10 ... ORDER BY RANK FULLTEXTSCORE(...)``).
        Terms are single words (``_term_literal`` checks), so nothing typed by a caller becomes query syntax. With
        ``dated``, a turn's date words are a second full-text path, fused with its text by ``RRF`` (Learn, "RRF":
        "Fusion with two FullTextScore functions").
        """
        paths = [f"c{p.replace('/', '.')}" for p in (_TEXT_PATHS if dated else _TEXT_PATHS[:1])]
        fields = ", ".join([_HIT_FIELDS, *paths[1:]])
        if self._full_text_search:
            args = ", ".join(_term_literal(t) for t in terms)
            contains = " OR ".join(f"FullTextContainsAny({p}, {args})" for p in paths)
            scores = [f"FullTextScore({p}, {args})" for p in paths]
            rank = scores[0] if len(scores) == 1 else f"RRF({', '.join(scores)})"
            sql = f"SELECT {_top(limit)} {fields} FROM c {base} AND ({contains}) ORDER BY RANK {rank}"  # noqa: S608
            return sql, {}
        term_params = {f"@t{i}": t for i, t in enumerate(terms)}
        contains = " OR ".join(f"CONTAINS(LOWER({path}), {p})" for p in term_params for path in paths)
        sql = f"SELECT {_top(_FALLBACK_CANDIDATES)} {fields} FROM c {base} AND ({contains})"  # noqa: S608
        return sql, term_params

    async def search_vector(
        self, user_id: str, vector: Vector, kinds: Sequence[MemoryKind], limit: int, where: ItemFilter | None = None
    ) -> list[SearchHit]:
        """Vector similarity search over the user's memory; best first, score higher is better (cosine)."""
        if not kinds or limit <= 0:
            return []
        if self._dimensions is not None and len(vector) != self._dimensions:
            raise EmbeddingDimensionMismatchError(
                f"Query vector has {len(vector)} dimensions; the store holds vectors of {self._dimensions}"
            )
        query_vector = [float(x) for x in vector]
        base, filter_params = _search_where(where)
        base += " AND IS_DEFINED(c.embedding)"
        groups = self._kind_groups(kinds)
        if self._vector_search:
            sql = (
                f"SELECT {_top(limit)} {_HIT_FIELDS}, VectorDistance(c.embedding, @vector) AS score "  # noqa: S608
                f"FROM c {base} ORDER BY VectorDistance(c.embedding, @vector)"
            )
            params = {"@vector": query_vector, **filter_params}
            results = await asyncio.gather(
                *(self._query(container, sql, user_id, {**params, "@types": types}) for container, types in groups)
            )
            hits = [_hit(row, float(row["score"])) for rows in results for row in rows if "score" in row]
        else:
            # No vector index on the account: cosine over the user's stored vectors, computed here. Reads every
            # vector of the user, which is fine for the small per-user memories this path is meant for.
            sql = f"SELECT {_HIT_FIELDS}, c.embedding FROM c {base}"  # noqa: S608 - constant SQL
            results = await asyncio.gather(
                *(
                    self._query(container, sql, user_id, {"@types": types, **filter_params})
                    for container, types in groups
                )
            )
            hits = self._cosine_hits([row for rows in results for row in rows], query_vector)
        hits.sort(key=lambda h: -h.score)
        return hits[:limit]

    @staticmethod
    def _cosine_hits(rows: list[JsonDict], vector: list[float]) -> list[SearchHit]:
        if not rows:
            return []
        query = np.asarray(vector, dtype=np.float64)
        lengths = {len(row["embedding"]) for row in rows}
        if lengths != {query.shape[0]}:
            raise EmbeddingDimensionMismatchError(
                f"Query vector has {query.shape[0]} dimensions; stored vectors have {sorted(lengths)}"
            )
        matrix = np.asarray([row["embedding"] for row in rows], dtype=np.float64)
        norms = np.linalg.norm(matrix, axis=1) * (np.linalg.norm(query) or 1.0)
        scores = (matrix @ query) / np.where(norms == 0, 1.0, norms)
        return [_hit(row, float(score)) for row, score in zip(rows, scores, strict=True)]

    # -- users ----------------------------------------------------------------------------------------------------
    async def begin_forget(self, user_id: str, now: datetime) -> datetime:
        """Create the user's pending-forget marker (an existing one is kept) and flag every session record of the user.

        Returns when the forget began. Once this returns, no turn is appended to any session of the user: a record
        that existed before the marker was written is flagged (an append's batch that read it unflagged fails on its
        ETag), and a session started later is refused by its own check of the marker.
        """
        began = await self._write_forget_marker(user_id, now)
        sessions = await self._query(
            self._container("interactions"),
            "SELECT c.session_id FROM c WHERE c.user_id = @user_id AND c.type = 'session'",
            user_id,
        )
        await self._gather([self._flag_forgetting(user_id, row["session_id"]) for row in sessions])
        return began

    async def _flag_forgetting(self, user_id: str, session_id: str) -> None:
        """Flag one session record ``forgetting`` (read, replace If-Match; again when another write came first)."""
        for attempt in range(_MAX_WRITE_CONFLICTS):
            current = await self._read_session(user_id, session_id)
            if current is None or current.forgetting:
                return
            if await self._replace_session(current.record, current.etag, forgetting=True):
                return
            await self._pause_after_conflict(attempt)
        raise self._too_many_conflicts("forget")

    async def _write_forget_marker(self, user_id: str, now: datetime) -> datetime:
        body = {
            "id": FORGET_ID,
            "user_id": user_id,
            "type": "forget",
            "schema_version": DOC_SCHEMA_VERSION,
            "began_at": _sort_key(now),
        }
        container = self._container("interactions")
        async with self._sdk_errors("create"):
            try:
                await container.create_item(body)
                return _utc(now)
            except CosmosResourceExistsError:
                pass
        existing = await self._read(container, FORGET_ID, user_id)
        return _from_sort_key(existing["began_at"]) if existing else _utc(now)

    async def finish_forget(self, user_id: str) -> None:
        """Delete the user's pending-forget marker."""
        await self._delete(self._container("interactions"), FORGET_ID, user_id)

    async def pending_forgets(self, limit: int = 100) -> list[PendingForget]:
        """Pending forgets of every user, oldest first (a cross-partition query: the cleanup timer's)."""
        if limit <= 0:
            return []
        query = "SELECT TOP @top c.user_id, c.began_at FROM c WHERE c.type = 'forget' ORDER BY c.began_at ASC"
        rows = await self._query_all_users(query, {"@top": limit})
        return [PendingForget(user_id=row["user_id"], began_at=_from_sort_key(row["began_at"])) for row in rows]

    async def delete_user(self, user_id: str) -> UserDeletion:
        """Remove everything stored about the user (every document of the user's partition in each container).

        The session records go first, so that an append in flight fails (its batch replaces the record If-Match);
        the rest is listed after that, so it includes every turn such an append stored before. The pending-forget
        marker stays (``finish_forget`` removes it).
        """
        # delete_all_items_by_partition_key would do it in one call on Azure (the test server lacks it), but the
        # counts the port returns need the listing anyway, and the marker must stay.
        counts: Counter[str] = Counter()
        interactions = self._container("interactions")
        sessions = await self._query(
            interactions, "SELECT c.id, c.type FROM c WHERE c.user_id = @user_id AND c.type = 'session'", user_id
        )
        deleted = await self._gather([self._delete(interactions, row["id"], user_id) for row in sessions])
        counts.update(row["type"] for row, done in zip(sessions, deleted, strict=True) if done)
        for name in ("interactions", "summaries", "insights"):
            container = self._container(name)
            rows = await self._query(container, "SELECT c.id, c.type FROM c WHERE c.user_id = @user_id", user_id)
            rows = [row for row in rows if row.get("type") != "forget"]
            deleted = await self._gather([self._delete(container, row["id"], user_id) for row in rows])
            counts.update(row["type"] for row, done in zip(rows, deleted, strict=True) if done)
        return UserDeletion(
            sessions=counts["session"],
            turns=counts["turn"],
            chunks=counts["chunk"],
            summaries=counts["summary"],
            insights=counts["insight"],
        )

    async def _delete(self, container: ContainerProxy, item_id: str, user_id: str) -> bool:
        async with self._sdk_errors("delete"):
            try:
                await container.delete_item(item_id, partition_key=user_id)
            except CosmosResourceNotFoundError:
                return False  # deleted concurrently
            return True

    async def export_user(self, user_id: str) -> UserExport:
        """Everything stored about the user (without vectors)."""
        sessions, turns, chunks, summaries, insights = await asyncio.gather(
            self._find(SessionDocument, user_id, order_by="c.ts ASC"),
            self._find(TurnDocument, user_id),
            self._find(ChunkDocument, user_id),
            self._find(SummaryDocument, user_id),
            self._find(InsightDocument, user_id),
        )

        def order(doc: _SearchableDocument) -> tuple[str, int, str]:
            return (doc.session_id or "", -1 if doc.first_seq is None else doc.first_seq, doc.ts)

        return UserExport(
            user_id=user_id,
            sessions=[d.to_domain() for d in sessions],
            turns=[d.to_domain() for d in sorted(turns, key=order)],
            chunks=[d.to_domain() for d in sorted(chunks, key=order)],
            summaries=[d.to_domain() for d in sorted(summaries, key=order)],
            insights=[d.to_domain() for d in sorted(insights, key=order)],
        )
