"""``SessionHost`` on the Durable client: hot state in session entities, background work in orchestrations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import azure.durable_functions as df
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from memory_core.errors import SessionEndedError
from memory_core.pool import PoolEntry, PoolState
from memory_core.ports import ReflectionHandle
from memory_core.session import SessionState, TurnInput
from orchestrations import names

logger = logging.getLogger(__name__)

_FINISHED = [
    OrchestrationRuntimeStatus.Completed,
    OrchestrationRuntimeStatus.Failed,
    OrchestrationRuntimeStatus.Terminated,
]
_RUNNING = {OrchestrationRuntimeStatus.Pending, OrchestrationRuntimeStatus.Running}
_ACCEPTED = {*_RUNNING, OrchestrationRuntimeStatus.Completed}
_RETRYABLE = (OrchestrationRuntimeStatus.Failed, OrchestrationRuntimeStatus.Terminated)
_TERMINATION_POLLS = 50
_TERMINATION_POLL_SECONDS = 0.1
# Purging by filter needs a lower bound on the creation time; nothing of this service is older.
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


class DurableSessionHost:
    """The ``SessionHost`` port over a ``DurableOrchestrationClient``."""

    def __init__(self, client: df.DurableOrchestrationClient) -> None:
        self._client = client

    async def read(self, user_id: str, session_id: str) -> SessionState | None:
        """The session entity's state, or None."""
        response = await self._client.read_entity_state(names.session_entity(user_id, session_id))
        if not response.entity_exists or not response.entity_state:
            return None
        return SessionState.model_validate(response.entity_state)

    async def hold(self, state: SessionState) -> None:
        """Load the state into the session entity (kept if one is there) and enter it in the pool."""
        entity = names.session_entity(state.user_id, state.session_id)
        await self._client.signal_entity(entity, names.LOAD, state.model_dump(mode="json"))
        entry = PoolEntry(
            user_id=state.user_id,
            session_id=state.session_id,
            started_at=state.started_at,
            last_activity=state.last_activity,
            turn_count=state.turn_count,
            persisted_through=state.turn_count,
        )
        await self._client.signal_entity(
            names.pool_entity(),
            names.TOUCH,
            {"key": names.session_key(state.user_id, state.session_id), "entry": entry.model_dump(mode="json")},
        )

    async def submit_turn(self, user_id: str, session_id: str, turn: TurnInput) -> None:
        """Start the turn's ingest; a repeat while the first is still running is accepted, not run twice.

        Once the session's end was asked (its reflection exists) no turn is accepted: the session entity may still
        look active until reflection ends it, and a turn accepted then would be refused by its ingest, unseen.
        """
        reflection = await self._client.get_status(names.reflection_instance_id(user_id, session_id))
        if reflection and reflection.runtime_status is not None:
            raise SessionEndedError(user_id, session_id)
        instance_id = names.ingest_instance_id(user_id, session_id, turn.turn_id)
        job = {"user_id": user_id, "session_id": session_id, "turn": turn.model_dump(mode="json")}
        try:
            await self._client.start_new(names.INGEST_ORCHESTRATOR, instance_id, job)
        except Exception:
            # host.json keeps running instances from being replaced, so starting a running one fails: that is a
            # retried request, already accepted (and it may have completed since). Otherwise try once more.
            status = await self._client.get_status(instance_id)
            if status and status.runtime_status in _ACCEPTED:
                logger.info(
                    "Turn %s of %s/%s was already accepted (%s)", turn.turn_id, user_id, session_id, instance_id
                )
                return
            await self._client.start_new(names.INGEST_ORCHESTRATOR, instance_id, job)

    async def start_reflection(self, user_id: str, session_id: str) -> ReflectionHandle:
        """Start the session's one reflection, unless it is running or done (a failed one is started again)."""
        instance_id = names.reflection_instance_id(user_id, session_id)
        status = await self._client.get_status(instance_id)
        if not status or status.runtime_status in (None, *_RETRYABLE):
            await self._client.start_new(
                names.REFLECTION_ORCHESTRATOR, instance_id, {"user_id": user_id, "session_id": session_id}
            )
        return ReflectionHandle(
            instance_id=instance_id, status_urls=self._client.create_http_management_payload(instance_id)
        )

    async def pool(self) -> PoolState:
        """The pool entity's state."""
        response = await self._client.read_entity_state(names.pool_entity())
        if not response.entity_exists or not response.entity_state:
            return PoolState()
        return PoolState.model_validate(response.entity_state)

    async def forget(self, user_id: str, session_ids: Sequence[str]) -> int:
        """Unload the user's sessions, stop their running orchestrations, and purge every history of the user."""
        for session_id in session_ids:
            await self._client.signal_entity(names.session_entity(user_id, session_id), names.DELETE)
            await self._client.signal_entity(
                names.pool_entity(), names.REMOVE, {"key": names.session_key(user_id, session_id)}
            )
        instances = await self._client.get_status_by(instance_id_prefix=names.user_prefix(user_id))
        running = [i.instance_id for i in instances if i.runtime_status in _RUNNING]
        for instance_id in running:
            await self._client.terminate(instance_id, "user forgotten")
        # Termination is a queued message: a running instance cannot be purged until it has taken effect.
        for _ in range(_TERMINATION_POLLS):
            if not running:
                break
            await asyncio.sleep(_TERMINATION_POLL_SECONDS)
            statuses = [await self._client.get_status(instance_id) for instance_id in running]
            running = [s.instance_id for s in statuses if s and s.runtime_status in _RUNNING]
        purged = 0
        for instance in instances:
            if instance.instance_id in running:
                logger.warning("Instance %s of a forgotten user is still running; not purged", instance.instance_id)
                continue
            result = await self._client.purge_instance_history(instance.instance_id)
            purged += result.instances_deleted
        return purged

    async def start_eviction(self, user_id: str, session_id: str, cutoff: datetime) -> None:
        """Start the session's eviction (one per session and cutoff)."""
        instance_id = names.eviction_instance_id(user_id, session_id, cutoff.isoformat())
        job = {"user_id": user_id, "session_id": session_id, "cutoff": cutoff.isoformat()}
        await self._client.start_new(names.EVICTION_ORCHESTRATOR, instance_id, job)

    async def mark_cleaned(self, now: datetime) -> None:
        """Record the cleanup run in the pool entity."""
        await self._client.signal_entity(names.pool_entity(), names.CLEANED, {"now": now.isoformat()})

    async def purge_finished(self, before: datetime) -> int:
        """Purge histories of orchestrations that finished and were created before ``before``."""
        result = await self._client.purge_instance_history_by(
            created_time_from=_EPOCH, created_time_to=before, runtime_status=_FINISHED
        )
        return int(result.instances_deleted)
