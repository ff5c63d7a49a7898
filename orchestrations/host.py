"""``SessionHost`` on the Durable client: background work in orchestrations, the hot mirror in session entities."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import azure.durable_functions as df
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus
from pydantic import BaseModel

from memory_core.ports import ReflectionHandle, ReflectionState
from memory_core.session import HotSession
from orchestrations import names
from orchestrations.payloads import BatchJob, EvictJob, SessionRef

logger = logging.getLogger(__name__)

_FINISHED = [
    OrchestrationRuntimeStatus.Completed,
    OrchestrationRuntimeStatus.Failed,
    OrchestrationRuntimeStatus.Terminated,
]
_RUNNING = {OrchestrationRuntimeStatus.Pending, OrchestrationRuntimeStatus.Running}
_RETRYABLE = (OrchestrationRuntimeStatus.Failed, OrchestrationRuntimeStatus.Terminated)
_TERMINATION_POLLS = 50
_TERMINATION_POLL_SECONDS = 0.1
# Purging by filter needs a lower bound on the creation time; nothing of this service is older.
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


class DurableSessionHost:
    """The ``SessionHost`` port over a ``DurableOrchestrationClient``."""

    def __init__(self, client: df.DurableOrchestrationClient) -> None:
        self._client = client

    async def read(self, user_id: str, session_id: str) -> HotSession | None:
        """The session entity's state as last persisted, or None."""
        response = await self._client.read_entity_state(names.session_entity(user_id, session_id))
        if not response.entity_exists or not response.entity_state:
            return None
        return HotSession.model_validate(response.entity_state)

    async def _start_once(self, orchestrator: str, instance_id: str, job: BaseModel) -> bool:
        """Start an instance unless one with this id is running; True when this call started it."""
        try:
            await self._client.start_new(orchestrator, instance_id, job.model_dump(mode="json"))
            return True
        except Exception:
            # host.json keeps running instances from being replaced, so starting a running one fails: it is there.
            status = await self._client.get_status(instance_id)
            if status and status.runtime_status in _RUNNING:
                return False
            raise

    async def start_batch(self, user_id: str, session_id: str, through_seq: int) -> None:
        """Start the background work of the turns up to ``through_seq`` (one instance per batch end)."""
        job = BatchJob(user_id=user_id, session_id=session_id, through_seq=through_seq)
        await self._start_once(names.BATCH_ORCHESTRATOR, names.batch_instance_id(user_id, session_id, through_seq), job)

    async def start_reflection(self, user_id: str, session_id: str) -> ReflectionHandle:
        """Start the session's one reflection, unless it is running or done (a failed one is started again)."""
        instance_id = names.reflection_instance_id(user_id, session_id)
        status = await self._client.get_status(instance_id)
        if not status or status.runtime_status in (None, *_RETRYABLE):
            await self._start_once(
                names.REFLECTION_ORCHESTRATOR, instance_id, SessionRef(user_id=user_id, session_id=session_id)
            )
        return ReflectionHandle(instance_id=instance_id)

    async def reflection_started(self, user_id: str, session_id: str) -> bool:
        """Whether the session's reflection instance exists (in any state)."""
        status = await self._client.get_status(names.reflection_instance_id(user_id, session_id))
        return bool(status and status.runtime_status is not None)

    async def reflection_state(self, user_id: str, session_id: str) -> ReflectionState | None:
        """The session's reflection instance as the Durable client reports it (without its input or history)."""
        status = await self._client.get_status(names.reflection_instance_id(user_id, session_id))
        if not status or status.runtime_status is None:
            return None
        return ReflectionState(
            instance_id=status.instance_id,
            name=status.name,
            runtime_status=status.runtime_status.value,
            output=status.output,
            created=status.created_time,
            updated=status.last_updated_time,
        )

    async def forget(self, user_id: str, session_ids: Sequence[str]) -> int:
        """Unload the user's sessions, stop their running orchestrations, and purge every history of the user."""
        for session_id in session_ids:
            await self._client.signal_entity(names.session_entity(user_id, session_id), names.DELETE)
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
        job = EvictJob(user_id=user_id, session_id=session_id, cutoff=cutoff)
        await self._start_once(names.EVICTION_ORCHESTRATOR, instance_id, job)

    async def purge_finished(self, before: datetime) -> int:
        """Purge histories of orchestrations that finished and were created before ``before``."""
        result = await self._client.purge_instance_history_by(
            created_time_from=_EPOCH, created_time_to=before, runtime_status=_FINISHED
        )
        return int(result.instances_deleted)
