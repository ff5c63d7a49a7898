"""``MemoryServiceClient``: the guide's generic Python client (Pattern 2) over ``httpx.AsyncClient``.

What it adds to plain HTTP calls:

* **Read your own writes.** The service answers ``store_turn`` once the turn is stored, so the next ``get_context``
  holds it. The client still sends the last ``turn_id`` it stored as ``after_turn_id``, which the service checks
  (a turn it never stored is a 404 naming it, never a silent gap).
* **Retries.** Every call is safe to repeat (sessions are started under a client-generated id, a turn under its
  ``turn_id``, the rest are reads or idempotent), so connection errors, timeouts and 503 answers (also 500, 502 and
  504) are retried with exponential backoff and jitter, honouring ``Retry-After``, up to ``max_attempts`` attempts.
* **Typed errors.** Error answers raise the classes of :mod:`memory_client.errors`, carrying the service's JSON
  error (``status``, ``error``, ``detail``, ``field``).
* **Graceful degradation** (``degrade=True``, the default). When the service cannot be reached (or answers 503 on
  every attempt) the agent keeps working: ``start_session``, ``get_context``, ``retrieve``, ``get_insights`` and
  ``get_summaries`` answer empty results of the usual shape with a ``logging`` warning, and ``store_turn`` keeps
  the turn in a bounded in-memory buffer (``buffer_size`` turns; when full the oldest is dropped with a warning).
  The buffer is sent, in order and under the same ``turn_id``s (so nothing is stored twice), before the next call
  that reaches the service, or explicitly with ``flush()``. While degraded, calls make a single attempt so an
  outage does not slow every turn of the agent down. The buffer lives in this process only: turns still in it
  when the process exits or dies are lost (``aclose()`` tries one last flush and logs what it could not send).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import time
import uuid
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, cast
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

try:  # optional: with opentelemetry-api installed, each call is a span and carries its trace context
    from opentelemetry import propagate as _otel_propagate
    from opentelemetry import trace as _otel_trace
except ImportError:  # pragma: no cover - the client runs without it
    _otel_propagate = None  # type: ignore[assignment]
    _otel_trace = None  # type: ignore[assignment]

from memory_client.errors import (
    Conflict,
    InvalidRequest,
    MemoryServiceError,
    ReflectionTimeout,
    ServerError,
    ServiceUnavailable,
    error_from_response,
)
from memory_client.schemas import (
    ForgetResult,
    InsightsResult,
    MemoryContext,
    ReflectionHandle,
    ReflectionStatus,
    RetrieveResult,
    StoreResult,
    SummariesResult,
)

logger = logging.getLogger("memory_client")

__all__ = ["DEFAULT_SERVICE_URL", "TERMINAL_STATUSES", "MemoryServiceClient", "PendingTurn", "empty_context"]

DEFAULT_SERVICE_URL: Final = "http://localhost:7071"
# Final runtime states of a Durable orchestration.
TERMINAL_STATUSES: Final = frozenset({"Completed", "Failed", "Terminated", "Canceled"})
# Answers worth another attempt of a call that is safe to repeat: the service, a dependency or a gateway in front of
# it is temporarily unavailable (503, 502, 504), or the service failed unexpectedly (500).
RETRY_STATUSES: Final = frozenset({500, 502, 503, 504})

_VERSION = "0.1.0"


async def _traced_request(
    http: httpx.AsyncClient, method: str, url: str, body: Any, headers: dict[str, str]
) -> httpx.Response:
    """One HTTP attempt; with OpenTelemetry installed, in a CLIENT span whose W3C ``traceparent`` it sends."""
    if _otel_trace is None or _otel_propagate is None:
        return await http.request(method, url, json=body, headers=headers)
    # A user id in the path (/users/{user_id}) stays out of the span: the route's template names it.
    path = re.sub(r"^/users/[^/]+", "/users/{user_id}", urlsplit(url).path or "/")
    attributes = {"http.request.method": method, "url.path": path}
    tracer = _otel_trace.get_tracer("memory_client")
    with tracer.start_as_current_span(
        f"{method} {path}", kind=_otel_trace.SpanKind.CLIENT, attributes=attributes
    ) as span:
        carried = dict(headers)
        _otel_propagate.inject(carried)
        response = await http.request(method, url, json=body, headers=carried)
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 400:
            span.set_attribute("error.type", str(response.status_code))
        return response


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _iso(moment: datetime) -> str:
    """An aware time as the service takes it (RFC 3339 with an offset)."""
    if moment.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    return moment.isoformat()


def empty_context(user_id: str, session_id: str, formatted_context: str = "") -> MemoryContext:
    """A context with the service's keys and nothing in it: what ``get_context`` answers while degraded."""
    return {
        "session_id": session_id,
        "user_id": user_id,
        "active_context": [],
        "cumulative_summary": "",
        "insights": [],
        "session_summaries": [],
        "formatted_context": formatted_context,
        "restored": False,
        "turn_count": 0,
    }


@dataclass(frozen=True)
class PendingTurn:
    """A turn kept in the local buffer until the service can be reached again."""

    session_id: str
    turn_id: str
    user_message: str
    agent_message: str
    timestamp: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def body(self, user_id: str) -> dict[str, Any]:
        """The ``/memory/store`` request body."""
        body: dict[str, Any] = {
            "user_id": user_id,
            "session_id": self.session_id,
            "turn_id": self.turn_id,
            "user_message": self.user_message,
            "agent_message": self.agent_message,
            "timestamp": self.timestamp,
        }
        if self.metadata:
            body["metadata"] = self.metadata
        return body


class MemoryServiceClient:
    """Async client of the agent memory service for one user; use it as ``async with``.

    Args:
        service_url: base URL of the service, e.g. ``http://localhost:7071`` (``make run``) or
            ``https://<app>.azurewebsites.net``. The routes have no prefix (``/sessions/start``...).
        user_id: the user whose memory this client reads and writes.
        api_key: sent as the ``x-functions-key`` header: a function key on Azure (none locally).
        timeout: seconds for one HTTP attempt (or an ``httpx.Timeout``).
        admin_key: the key for the admin routes (``forget_user``, ``export_user``: the master key on Azure);
            defaults to ``api_key``.
        session_id: continue this session without calling ``start_session`` (it must exist on the service).
        max_attempts: attempts of one call on connection errors, timeouts and 503 answers (at least 1).
        backoff: first wait between attempts, in seconds; doubled on each retry (with jitter).
        max_backoff: longest wait between two attempts.
        max_retry_after: longest ``Retry-After`` honoured, in seconds.
        degrade: answer empty results and buffer turns when the service is unreachable (else raise
            ``ServiceUnavailable``).
        buffer_size: most turns kept in the local buffer while the service is unreachable.
        degraded_note: ``formatted_context`` of a degraded context (default empty: nothing is injected).
        retry_statuses: HTTP statuses that are retried (default 500, 502, 503, 504; every call is idempotent).
        transport: an ``httpx`` transport (e.g. ``httpx.MockTransport`` in tests).
        headers: extra headers sent with every request.
    """

    # How the client waits between attempts and polls (replaceable in tests).
    _sleep = staticmethod(asyncio.sleep)

    def __init__(
        self,
        service_url: str,
        user_id: str,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = 10.0,
        *,
        admin_key: str | None = None,
        session_id: str | None = None,
        max_attempts: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 4.0,
        max_retry_after: float = 30.0,
        degrade: bool = True,
        buffer_size: int = 100,
        degraded_note: str = "",
        retry_statuses: Collection[int] = RETRY_STATUSES,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not user_id:
            raise ValueError("user_id is required")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        self.service_url = service_url.rstrip("/")
        self.user_id = user_id
        self.api_key = api_key
        self.admin_key = admin_key
        self.session_id: str | None = session_id
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.degrade = degrade
        self.buffer_size = buffer_size
        self.degraded_note = degraded_note
        self.retry_statuses = frozenset(retry_statuses)
        self.last_error: MemoryServiceError | None = None
        self.dropped_turns = 0
        self._http = httpx.AsyncClient(
            base_url=self.service_url,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": f"memory-client/{_VERSION}", "Accept": "application/json", **(headers or {})},
        )
        self._buffer: deque[PendingTurn] = deque()
        self._lock = asyncio.Lock()
        self._last_turn_ids: dict[str, str] = {}
        # Sessions started while the service was unreachable -> whether to restore (else create) when it is back.
        self._unstarted: dict[str, bool] = {}
        self._degraded = False

    # -- lifecycle -------------------------------------------------------------------------------------------------

    async def __aenter__(self) -> MemoryServiceClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Try to send the buffered turns once more, log any that are lost, and close the HTTP connections."""
        try:
            if self._buffer:
                async with self._lock:
                    await self._flush_locked(attempts=1)
                if self._buffer:
                    logger.warning(
                        "Closing with %d turn(s) not sent to the memory service; they are lost: %s",
                        len(self._buffer),
                        ", ".join(f"{t.session_id}/{t.turn_id}" for t in self._buffer),
                    )
        finally:
            await self._http.aclose()

    # -- state -----------------------------------------------------------------------------------------------------

    @property
    def degraded(self) -> bool:
        """Whether the last call found the service unreachable (it answered from the local fallback)."""
        return self._degraded

    @property
    def pending_turns(self) -> int:
        """How many turns wait in the local buffer."""
        return len(self._buffer)

    @property
    def buffered_turns(self) -> list[PendingTurn]:
        """The buffered turns, oldest first (a copy)."""
        return list(self._buffer)

    @property
    def last_turn_id(self) -> str | None:
        """The last turn of the current session the service accepted (sent as ``after_turn_id``)."""
        return self._last_turn_ids.get(self.session_id) if self.session_id else None

    # -- sessions --------------------------------------------------------------------------------------------------

    async def start_session(self, session_id: str | None = None, *, restore: bool = True) -> MemoryContext:
        """Start a session (or continue ``session_id``) and return its context; it becomes the current session.

        Without ``session_id`` the client generates one (uuid4), so a retried start never makes two sessions. With
        ``session_id`` and ``restore=True`` the session must exist (hot or stored); ``restore=False`` creates it.
        Degrades to an empty context when the service is unreachable: the session is then started when the service
        is back, before its first buffered turn is sent.
        """
        await self._opportunistic_flush()
        generated = session_id is None
        sid = session_id or uuid.uuid4().hex
        create = generated or not restore
        try:
            context = await self._start(sid, create=create, generated=generated, attempts=self._attempts())
        except ServiceUnavailable as exc:
            if not self.degrade:
                raise
            self._went_unavailable(exc, f"session {sid} will be started when it is back; empty context")
            self._unstarted[sid] = not create
            self.session_id = sid
            return empty_context(self.user_id, sid, self.degraded_note)
        self.session_id = context["session_id"]
        return context

    async def _start(self, sid: str, *, create: bool, generated: bool, attempts: int) -> MemoryContext:
        body = {"user_id": self.user_id, "session_id": sid, "restore": not create}
        try:
            response = await self._send("POST", "/sessions/start", json=body, attempts=attempts)
        except Conflict:
            if not generated:
                raise
            # The id is ours (uuid4): an earlier attempt whose answer was lost created it. Continue it.
            response = await self._send("POST", "/sessions/start", json={**body, "restore": True}, attempts=attempts)
        self._unstarted.pop(sid, None)
        return cast(MemoryContext, response.json())

    async def _ensure_started(self, sid: str, attempts: int) -> MemoryContext | None:
        """Start a session that was started while the service was unreachable; None if it needs no start."""
        if sid not in self._unstarted:
            return None
        restore = self._unstarted[sid]
        return await self._start(sid, create=not restore, generated=not restore, attempts=attempts)

    async def end_session(self, session_id: str | None = None) -> ReflectionHandle:
        """End the session (default: the current one) and start its reflection; returns its status URLs.

        Buffered turns are sent first; if some of this session's turns still cannot be sent the session is not
        ended and ``ServiceUnavailable`` is raised (ending it would refuse them). Follow the reflection with
        :meth:`wait_for_reflection`. Ending the current session clears ``session_id``.
        """
        sid = self._require_session(session_id)
        async with self._lock:
            if self._buffer:
                await self._flush_locked(attempts=self.max_attempts)
            waiting = sum(1 for t in self._buffer if t.session_id == sid)
            if waiting:
                raise ServiceUnavailable(
                    f"{waiting} turn(s) of session {sid} are still buffered (the service is unreachable); "
                    "the session was not ended, call end_session again later",
                    error="TurnsBuffered",
                )
            await self._ensure_started(sid, self.max_attempts)
        response = await self._send(
            "POST", "/sessions/end", json={"user_id": self.user_id, "session_id": sid}, attempts=self.max_attempts
        )
        self._last_turn_ids.pop(sid, None)
        if self.session_id == sid:
            self.session_id = None
        return cast(ReflectionHandle, response.json())

    async def wait_for_reflection(
        self,
        handle: ReflectionHandle | str,
        timeout: float = 60.0,  # noqa: ASYNC109 (public API: the poll's own deadline)
        *,
        poll_interval: float = 0.25,
    ) -> ReflectionStatus:
        """Poll the reflection's ``statusQueryGetUri`` until it is Completed, Failed, Terminated or Canceled.

        Args:
            handle: what ``end_session`` returned, or a status URL.
            timeout: seconds to wait in all; then ``ReflectionTimeout`` (its ``body`` is the last status).
            poll_interval: seconds between two polls.

        Returns:
            The Durable status document: ``runtimeStatus``, and ``output`` (``summary``, ``insights_added``...)
            once Completed. A Failed reflection is returned too: check ``runtimeStatus``.
        """
        url = handle if isinstance(handle, str) else handle.get("statusQueryGetUri")
        if not url:
            raise ValueError("The handle has no statusQueryGetUri")
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while True:
            response = await self._send("GET", url, attempts=self.max_attempts, send_key=self._send_key_to(url))
            status = response.json() if response.content else {}
            if status.get("runtimeStatus") in TERMINAL_STATUSES:
                return cast(ReflectionStatus, status)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReflectionTimeout(
                    f"Reflection not finished after {timeout:g}s (runtimeStatus {status.get('runtimeStatus')!r})",
                    body=status,
                    method="GET",
                    url=url,
                )
            await self._sleep(min(poll_interval, remaining))

    # -- turns and context -----------------------------------------------------------------------------------------

    async def store_turn(
        self,
        user_message: str,
        agent_message: str,
        *,
        turn_id: str | None = None,
        session_id: str | None = None,
        timestamp: datetime | str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> StoreResult:
        """Store one turn (the user's message and the agent's reply) in the session (default: the current one).

        The turn is durable, numbered (``seq``) and in the session's context when this returns ``status``
        ``stored`` (``duplicate`` when its ``turn_id`` was stored before). The client generates ``turn_id`` (uuid4
        hex) unless given and stamps ``timestamp`` (now, UTC) unless given, so a buffered turn keeps its time. When
        the service is unreachable the turn is buffered (``status`` ``buffered``) and sent later in order.
        """
        sid = self._require_session(session_id)
        for name, value in (("user_message", user_message), ("agent_message", agent_message)):
            if not value or not value.strip():
                raise InvalidRequest("must not be blank", error="ValidationError", field=name)
        if isinstance(timestamp, datetime):
            stamp = _iso(timestamp)
        else:
            stamp = timestamp or _now_iso()
        turn = PendingTurn(sid, turn_id or uuid.uuid4().hex, user_message, agent_message, stamp, dict(metadata or {}))
        async with self._lock:
            if self._buffer:
                await self._flush_locked(attempts=1)
            failure = self.last_error
            if not self._buffer:  # nothing older waits: send this one now
                try:
                    await self._ensure_started(sid, self._attempts())
                    return await self._post_turn(turn, self._attempts())
                except ServiceUnavailable as exc:
                    if not self.degrade:
                        raise
                    failure = exc
            self._enqueue(turn)
            self._went_unavailable(
                failure or ServiceUnavailable("unreachable"),
                f"turn {turn.turn_id} kept in the local buffer ({len(self._buffer)} buffered)",
            )
        return {"status": "buffered", "user_id": self.user_id, "session_id": sid, "turn_id": turn.turn_id}

    async def _post_turn(self, turn: PendingTurn, attempts: int) -> StoreResult:
        response = await self._send("POST", "/memory/store", json=turn.body(self.user_id), attempts=attempts)
        result = cast(StoreResult, response.json())
        self._last_turn_ids[turn.session_id] = result.get("turn_id", turn.turn_id)
        return result

    def _enqueue(self, turn: PendingTurn) -> None:
        while len(self._buffer) >= self.buffer_size:
            dropped = self._buffer.popleft()
            self.dropped_turns += 1
            logger.warning(
                "Memory buffer full (%d turns): dropped the oldest turn %s of session %s",
                self.buffer_size,
                dropped.turn_id,
                dropped.session_id,
            )
        self._buffer.append(turn)

    async def flush(self) -> int:
        """Send the buffered turns now, oldest first; returns how many were sent.

        Turns the service refuses for good (4xx, e.g. their session has ended) are dropped with an error log. Turns
        that still cannot be sent stay buffered (see ``pending_turns`` and ``last_error``).
        """
        async with self._lock:
            return await self._flush_locked(attempts=self.max_attempts)

    async def _flush_locked(self, attempts: int) -> int:
        sent = 0
        while self._buffer:
            turn = self._buffer[0]
            try:
                await self._ensure_started(turn.session_id, attempts)
                await self._post_turn(turn, attempts)
            except ServiceUnavailable as exc:
                self.last_error = exc
                self._degraded = True
                break
            except ServerError as exc:  # the service failed (after retries): keep the turn for a later flush
                self.last_error = exc
                logger.warning("Memory service failed on buffered turn %s; kept for later: %s", turn.turn_id, exc)
                break
            except MemoryServiceError as exc:  # 4xx: refused for good
                self._buffer.popleft()
                self.dropped_turns += 1
                logger.error(
                    "Memory service refused buffered turn %s of session %s; dropped: %s",
                    turn.turn_id,
                    turn.session_id,
                    exc,
                )
                continue
            self._buffer.popleft()
            sent += 1
        if sent:
            logger.info("Sent %d buffered turn(s) to the memory service (%d still buffered)", sent, len(self._buffer))
        return sent

    async def _opportunistic_flush(self) -> bool:
        """One quick attempt to send the buffer before another call; whether the buffer is empty afterwards."""
        if self._buffer:
            async with self._lock:
                if self._buffer:
                    await self._flush_locked(attempts=1)
        return not self._buffer

    async def get_context(self, session_id: str | None = None, *, after_turn_id: str | None = None) -> MemoryContext:
        """The session's ready-to-inject context (default: the current session).

        Every turn stored so far is in it. Sends the last turn this client stored in the session as
        ``after_turn_id`` (or the one given), which the service checks is there. Degrades to an empty context (same
        keys) when the service is unreachable.
        """
        sid = self._require_session(session_id)
        if not await self._opportunistic_flush():
            exc = self.last_error or ServiceUnavailable("turns are still buffered")
            if not self.degrade:
                raise exc
            self._went_unavailable(exc, "empty context")
            return empty_context(self.user_id, sid, self.degraded_note)
        try:
            await self._ensure_started(sid, self._attempts())
            body: dict[str, Any] = {"user_id": self.user_id, "session_id": sid}
            after = after_turn_id or self._last_turn_ids.get(sid)
            if after:
                body["after_turn_id"] = after
            response = await self._send("POST", "/memory/context", json=body, attempts=self._attempts())
        except ServiceUnavailable as exc:
            if not self.degrade:
                raise
            self._went_unavailable(exc, "empty context")
            return empty_context(self.user_id, sid, self.degraded_note)
        return cast(MemoryContext, response.json())

    # -- search, insights, summaries -------------------------------------------------------------------------------

    async def retrieve(
        self,
        query: str,
        top_k: int | None = None,
        *,
        session_id: str | None = None,
        max_tokens: int | None = None,
        kinds: Collection[str] | None = None,
        session_ids: Collection[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        as_of: datetime | None = None,
    ) -> RetrieveResult:
        """Hybrid search of the user's memory: ``facts``, ``count`` and ``items`` with provenance.

        ``top_k`` items (the service's default: 5, or as many as fit ``max_tokens``); ``max_tokens`` a budget the
        texts fit together; ``kinds`` (turn, chunk, summary, insight), ``session_ids``, ``since``/``until`` and
        ``as_of`` filter as ``/memory/retrieve`` documents. Degrades to no facts when the service is unreachable.
        """
        body: dict[str, Any] = {"user_id": self.user_id, "query": query}
        if session_id or self.session_id:
            body["session_id"] = session_id or self.session_id
        optional = {"top_k": top_k, "max_tokens": max_tokens, "kinds": kinds, "session_ids": session_ids}
        body.update({k: list(v) if isinstance(v, Collection) else v for k, v in optional.items() if v is not None})
        times = {"since": since, "until": until, "as_of": as_of}
        body.update({k: _iso(v) for k, v in times.items() if v is not None})
        empty: RetrieveResult = {"query": query, "facts": [], "count": 0, "items": [], "tokens": 0}
        return cast(RetrieveResult, await self._degradable_post("/memory/retrieve", body, empty, "no facts"))

    async def get_insights(
        self, *, recent_only: bool = False, include_superseded: bool = False, limit: int | None = None
    ) -> InsightsResult:
        """The user's long-term insights (``insights`` texts and ``items`` with provenance); empty when degraded."""
        body: dict[str, Any] = {
            "user_id": self.user_id,
            "recent_only": recent_only,
            "include_superseded": include_superseded,
        }
        if limit is not None:
            body["limit"] = limit
        empty: InsightsResult = {"user_id": self.user_id, "insights": [], "count": 0, "items": []}
        return cast(InsightsResult, await self._degradable_post("/insights", body, empty, "no insights"))

    async def get_summaries(self, limit: int = 5) -> SummariesResult:
        """The user's session summaries, newest first; empty when degraded."""
        body = {"user_id": self.user_id, "limit": limit}
        empty: SummariesResult = {"user_id": self.user_id, "summaries": [], "count": 0, "items": []}
        return cast(SummariesResult, await self._degradable_post("/summaries", body, empty, "no summaries"))

    async def _degradable_post(self, path: str, body: dict[str, Any], empty: Any, what: str) -> Any:
        await self._opportunistic_flush()
        try:
            response = await self._send("POST", path, json=body, attempts=self._attempts())
        except ServiceUnavailable as exc:
            if not self.degrade:
                raise
            self._went_unavailable(exc, what)
            return empty
        return response.json()

    # -- monitoring and user data ----------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """``GET /health``: whether the service is up and what it runs on (raises if it cannot be reached)."""
        response = await self._send("GET", "/health", attempts=self.max_attempts)
        return cast(dict[str, Any], response.json())

    async def forget_user(self, user_id: str | None = None) -> ForgetResult:
        """Delete everything stored about the user (default: this client's); uses ``admin_key`` on Azure.

        Forgetting this client's user also drops its buffered turns and forgets its current session.
        """
        uid = user_id or self.user_id
        if uid == self.user_id:
            async with self._lock:
                self._buffer.clear()
            self._unstarted.clear()
            self._last_turn_ids.clear()
            self.session_id = None
        # The query-string form takes any id (the path form refuses slashes, # ? and %, which proxies may rewrite).
        query = urlencode({"user_id": uid})
        response = await self._send("DELETE", f"/users?{query}", attempts=self.max_attempts, admin=True)
        return cast(ForgetResult, response.json())

    async def export_user(self, user_id: str | None = None) -> dict[str, Any]:
        """Everything stored about the user (default: this client's), as JSON; uses ``admin_key`` on Azure."""
        uid = user_id or self.user_id
        query = urlencode({"user_id": uid})
        response = await self._send("GET", f"/users?{query}", attempts=self.max_attempts, admin=True)
        return cast(dict[str, Any], response.json())

    # -- HTTP ------------------------------------------------------------------------------------------------------

    def _require_session(self, session_id: str | None) -> str:
        sid = session_id or self.session_id
        if not sid:
            raise RuntimeError("No session: call start_session() first, or pass session_id")
        return sid

    def _attempts(self) -> int:
        """Attempts for a call that can degrade: one while the service is known to be unreachable."""
        return 1 if self._degraded else self.max_attempts

    def _went_unavailable(self, exc: MemoryServiceError, fallback: str) -> None:
        self.last_error = exc
        self._degraded = True
        logger.warning("Memory service unavailable (%s); continuing without it: %s", exc, fallback)

    @staticmethod
    def _send_key_to(url: str) -> bool:
        # Durable status URLs on Azure carry their own key (?code=<system key>); a function key sent with them would
        # be checked first and refused, so the header goes only to URLs without one.
        return "code" not in parse_qs(urlsplit(url).query)

    def _retry_delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None and (value := response.headers.get("Retry-After")):
            seconds: float | None
            try:
                seconds = float(value)
            except ValueError:
                try:
                    when = email.utils.parsedate_to_datetime(value)
                    seconds = (when - datetime.now(when.tzinfo or UTC)).total_seconds()
                except (TypeError, ValueError):
                    seconds = None
            if seconds is not None:
                return min(max(seconds, 0.0), self.max_retry_after)
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        return float(delay * (0.5 + random.random() / 2))

    async def _send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        attempts: int,
        admin: bool = False,
        send_key: bool = True,
    ) -> httpx.Response:
        """One call with retries; returns a 2xx response or raises a ``MemoryServiceError``."""
        headers: dict[str, str] = {}
        secret = (self.admin_key or self.api_key) if admin else self.api_key
        if secret and send_key:
            headers["x-functions-key"] = secret
        failure: MemoryServiceError | None = None
        for attempt in range(1, attempts + 1):
            response: httpx.Response | None = None
            try:
                response = await _traced_request(self._http, method, url, json, headers)
            except httpx.TransportError as exc:
                try:
                    target = str(exc.request.url)
                except RuntimeError:  # no request attached
                    target = url
                failure = ServiceUnavailable(
                    str(exc) or "no answer", error=type(exc).__name__, method=method, url=target
                )
            else:
                if response.status_code < 400:
                    self._degraded = False
                    return response
                error = error_from_response(response)
                if response.status_code not in self.retry_statuses:
                    self._degraded = False  # the service answered
                    raise error
                failure = error
            if attempt < attempts:
                delay = self._retry_delay(attempt, response)
                logger.debug(
                    "%s %s failed (%s); attempt %d of %d in %.2fs", method, url, failure, attempt + 1, attempts, delay
                )
                await self._sleep(delay)
        assert failure is not None
        if attempts > 1:
            failure.detail = f"{failure.detail} (after {attempts} attempts)"
        raise failure
