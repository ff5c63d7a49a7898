"""``CosmosMemoryProvider``: the memory service as a Microsoft Agent Framework context provider (the guide's Pattern 1).

It subclasses ``agent_framework.ContextProvider`` (agent-framework-core 1.x) and implements its two hooks:

* ``before_run(*, agent, session, context, state)``: gets the session's context from the service and adds its
  ``formatted_context`` to the run as one **context message** (``SessionContext.extend_messages``), wrapped in
  ``<memory_context ...>`` ... ``</memory_context>``. It is not added to the agent's system instructions
  (``SessionContext.extend_instructions``): memory is quoted data about the user, not directions to follow.
* ``after_run(*, agent, session, context, state)``: stores the turn: the run's user input text and the agent's
  response text.

It starts a memory session on first use (or on ``async with`` when ``auto_manage_session=True``) and
``end_session()`` ends it, which starts the service's reflection (session summary and insights). With
``auto_manage_session=True`` a session still open when the ``async with`` block exits is ended then.

Agent Framework is an optional dependency of ``memory_client``: install the extra,
``pip install './memory_client[agent-framework]'``.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Final

try:
    from agent_framework import AgentSession, ContextProvider, Message, SessionContext, SupportsAgentRun
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without agent_framework
    raise ImportError(
        "memory_client.CosmosMemoryProvider needs Microsoft Agent Framework (agent-framework-core>=1.23,<2), which is "
        "not installed. Install the extra: pip install './memory_client[agent-framework]' "
        "(or: pip install 'agent-framework-core>=1.23,<2')."
    ) from exc

from memory_client.client import DEFAULT_SERVICE_URL, MemoryServiceClient
from memory_client.errors import MemoryServiceError, SessionEnded, SessionNotFound
from memory_client.schemas import MemoryContext, ReflectionHandle, ReflectionStatus, StoreResult

__all__ = ["MEMORY_CONTEXT_END", "MEMORY_CONTEXT_START", "CosmosMemoryProvider"]

logger = logging.getLogger("memory_client.provider")

# The delimiters of the injected context message.
MEMORY_CONTEXT_START: Final = '<memory_context source="agent-memory-service">'
MEMORY_CONTEXT_END: Final = "</memory_context>"


class CosmosMemoryProvider(ContextProvider):
    """Long-term and session memory for an ``agent_framework.Agent``, from the agent memory service.

    Example (the guide's Pattern 1)::

        async with CosmosMemoryProvider(
            service_url="http://localhost:7071", user_id="user123", auto_manage_session=True
        ) as memory_provider:
            agent = Agent(client=chat_client, instructions="You are a helpful assistant...",
                          context_providers=[memory_provider])
            response = await agent.run("What did we discuss last time?")
            await memory_provider.end_session()  # triggers reflection

    Args:
        service_url: base URL of the memory service.
        user_id: the user whose memory the agent uses.
        api_key: function key, sent as ``x-functions-key`` (Azure).
        session_id: continue this existing memory session instead of starting one.
        auto_manage_session: start a session on ``async with`` and end it (reflection) when the block exits if
            ``end_session()`` was not called. Without it a session is started on the first run and only ended by
            ``end_session()``.
        client: a ``MemoryServiceClient`` to use (the provider then neither creates nor closes one; its
            ``user_id`` wins).
        source_id: the provider's id in Agent Framework (attribution of the messages it adds).
        context_role: role of the injected context message (``"user"``, as the framework's own memory providers
            use; every chat API accepts it mid-conversation).
        timeout: seconds for one HTTP attempt.
        raise_errors: raise the service's errors (e.g. ``SessionNotFound``) from the hooks instead of logging them.
            An unreachable service never raises: the client degrades (empty context, buffered turns).
        **client_options: more ``MemoryServiceClient`` options (``max_attempts``, ``buffer_size``...).
    """

    DEFAULT_SOURCE_ID: Final = "cosmos_memory"

    def __init__(
        self,
        service_url: str = DEFAULT_SERVICE_URL,
        user_id: str = "",
        *,
        api_key: str | None = None,
        session_id: str | None = None,
        auto_manage_session: bool = False,
        client: MemoryServiceClient | None = None,
        source_id: str = DEFAULT_SOURCE_ID,
        context_role: str = "user",
        timeout: float = 10.0,
        raise_errors: bool = False,
        **client_options: Any,
    ) -> None:
        super().__init__(source_id)
        if client is None:
            client = MemoryServiceClient(
                service_url, user_id, api_key, timeout, session_id=session_id, **client_options
            )
            self._owns_client = True
        else:
            if session_id:
                client.session_id = session_id
            self._owns_client = False
        self.client = client
        self.auto_manage_session = auto_manage_session
        self.context_role = context_role
        self.raise_errors = raise_errors
        self.last_context: MemoryContext | None = None
        self.last_reflection: ReflectionHandle | None = None

    @property
    def user_id(self) -> str:
        """The user whose memory is used."""
        return self.client.user_id

    @property
    def session_id(self) -> str | None:
        """The current memory session (None before the first run or after ``end_session``)."""
        return self.client.session_id

    # -- async context manager -------------------------------------------------------------------------------------

    async def __aenter__(self) -> CosmosMemoryProvider:
        if self.auto_manage_session and self.client.session_id is None:
            await self.start_session()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.auto_manage_session and self.client.session_id is not None:
                try:
                    await self.end_session()
                except MemoryServiceError as error:
                    logger.warning("Could not end memory session %s on exit: %s", self.client.session_id, error)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the client if the provider created it (sending buffered turns one last time)."""
        if self._owns_client:
            await self.client.aclose()

    # -- sessions --------------------------------------------------------------------------------------------------

    async def start_session(self, session_id: str | None = None, *, restore: bool = True) -> MemoryContext:
        """Start a memory session (or continue ``session_id``) and return its context."""
        context = await self.client.start_session(session_id, restore=restore)
        self.last_context = context
        logger.info("Memory session %s for user %s", context["session_id"], self.user_id)
        return context

    async def end_session(self) -> ReflectionHandle:
        """End the memory session; the service starts reflection (summary, insights). Returns its status URLs.

        The next run starts a new session. Follow the reflection with ``wait_for_reflection()``.
        """
        handle = await self.client.end_session()
        self.last_reflection = handle
        return handle

    async def wait_for_reflection(
        self,
        handle: ReflectionHandle | str | None = None,
        timeout: float = 60.0,  # noqa: ASYNC109 (public API: the poll's own deadline)
    ) -> ReflectionStatus:
        """Wait for the reflection of ``handle`` (default: the one the last ``end_session`` started)."""
        target = handle or self.last_reflection
        if target is None:
            raise RuntimeError("No reflection to wait for: call end_session() first")
        return await self.client.wait_for_reflection(target, timeout)

    def _forget_lost_session(self, error: MemoryServiceError) -> None:
        # The session was ended (or forgotten) elsewhere: the next run starts a new one instead of failing forever.
        if isinstance(error, SessionNotFound | SessionEnded):
            logger.warning("Memory session %s is gone (%s); the next run starts a new one", self.session_id, error)
            self.client.session_id = None

    # -- Agent Framework hooks -------------------------------------------------------------------------------------

    def format_context(self, memory: MemoryContext) -> str:
        """The text of the injected context message: the service's ``formatted_context`` between delimiters."""
        return f"{MEMORY_CONTEXT_START}\n{memory['formatted_context'].strip()}\n{MEMORY_CONTEXT_END}"

    async def before_run(
        self,
        *,
        agent: SupportsAgentRun,
        session: AgentSession,
        context: SessionContext,
        state: dict[str, Any],
    ) -> None:
        """Add the memory context to the run as a delimited context message (not to the instructions)."""
        try:
            if self.client.session_id is None:
                await self.start_session()
            memory = await self.client.get_context()
        except MemoryServiceError as error:
            self._forget_lost_session(error)
            if self.raise_errors:
                raise
            logger.error("Memory context unavailable for this run: %s", error)
            return
        self.last_context = memory
        state["memory_session_id"] = memory["session_id"]
        if not memory["formatted_context"].strip():
            return  # degraded (service unreachable): nothing to inject
        message = Message(
            role=self.context_role,
            contents=[self.format_context(memory)],
            additional_properties={"memory_session_id": memory["session_id"]},
        )
        context.extend_messages(self, [message])

    async def after_run(
        self,
        *,
        agent: SupportsAgentRun,
        session: AgentSession,
        context: SessionContext,
        state: dict[str, Any],
    ) -> None:
        """Store the run as one turn: the user's input text and the agent's response text."""
        user_text = "\n".join(m.text for m in context.input_messages if m.role == "user" and m.text.strip())
        response = context.response
        agent_text = response.text if response is not None else ""
        if not user_text.strip() or not agent_text.strip():
            logger.debug("Run without user text or response text: no turn stored")
            return
        metadata: dict[str, Any] = {"source": "agent_framework"}
        if context.session_id:
            metadata["agent_session_id"] = context.session_id
        try:
            if self.client.session_id is None:
                await self.start_session()
            result: StoreResult = await self.client.store_turn(user_text, agent_text, metadata=metadata)
        except MemoryServiceError as error:
            self._forget_lost_session(error)
            if self.raise_errors:
                raise
            logger.error("Turn not stored in memory: %s", error)
            return
        state["last_turn_id"] = result["turn_id"]
