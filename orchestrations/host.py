"""``SessionHost`` on the Durable client: background work in orchestrations, the hot mirror in session entities."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus
from opentelemetry.trace import SpanKind

from memory_core import telemetry
from memory_core.ports import ForgetProgress, ReflectionHandle, ReflectionState
from memory_core.session import HotSession
from orchestrations import names
from orchestrations.management import HttpInstanceManagement, InstanceInfo, InstanceManagement, entity_instance_id
from orchestrations.payloads import BatchJob, EvictJob, SessionRef, Traced

logger = logging.getLogger(__name__)

_FINISHED = [
    OrchestrationRuntimeStatus.Completed,
    OrchestrationRuntimeStatus.Failed,
    OrchestrationRuntimeStatus.Terminated,
]
_RUNNING = {OrchestrationRuntimeStatus.Pending, OrchestrationRuntimeStatus.Running}
_RETRYABLE = (OrchestrationRuntimeStatus.Failed, OrchestrationRuntimeStatus.Terminated)
FORGET_REASON = "user forgotten"
# A message an orchestration sent (an entity operation, above all a session entity's sync, which rebuilds the entity
# from the preview it carries) is delivered within this after the orchestration last changed: Azure Storage's queues
# are polled at least every 2 s (host.json's maxQueuePollingInterval), the local host's --durable-latency 2000 delivers
# within 3 s. A forget purges an orchestration only once it has been quiet this long (lastUpdatedTime has whole
# seconds), so that whatever it sent has arrived and a later pass sees (and deletes) an entity it brought back.
QUIET_SECONDS = 5.0
FORGET_PASS_PAUSE_SECONDS = 0.5
# Purging by filter needs a lower bound on the creation time; nothing of this service is older.
_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)


def instance_management(client: df.DurableOrchestrationClient) -> InstanceManagement:
    """The management API behind the client binding: its ``rpcBaseUrl`` (the SDK keeps the binding private)."""
    # A private name because the SDK leaves no public way: the client keeps the binding it was built from, and with
    # it rpcBaseUrl, only in _orchestration_bindings (azure/durable_functions/models/DurableOrchestrationClient.py,
    # __init__); its public methods page no listing (see orchestrations/management.py), and the public management
    # URLs are the webhook with the system key. tests/unit/test_sdk_private_names.py fails when that changes.
    base_url = client._orchestration_bindings.rpc_base_url
    if not base_url:
        raise RuntimeError("The durable client binding has no rpcBaseUrl (Durable extension 2.x is required)")
    return HttpInstanceManagement(base_url)


def _instance_id(entity: df.EntityId) -> str:
    return entity_instance_id(entity.name, entity.key)


def _entity_id(instance_id: str) -> df.EntityId:
    """The entity of an ``@name@key`` instance id."""
    _, name, key = instance_id.split("@", 2)
    return df.EntityId(name, key)


@dataclass
class _ForgetRun:
    """What one forget removed across its passes, and when it last asked each entity to delete itself."""

    purged: set[str] = field(default_factory=set)
    entities: set[str] = field(default_factory=set)
    signalled: dict[str, float] = field(default_factory=dict)


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

    async def _start_once(self, orchestrator: str, instance_id: str, job: Traced) -> bool:
        """Start an instance unless one with this id is running; True when this call started it.

        The job carries the trace context of a PRODUCER span of this start: the orchestration continues the trace.
        """
        attrs = {"durable.orchestration.name": orchestrator, "durable.instance.id": instance_id}
        with telemetry.span(f"start_orchestration {orchestrator}", SpanKind.PRODUCER, attrs):
            return await self._start(orchestrator, instance_id, job.model_copy(update={"trace": telemetry.inject()}))

    async def _start(self, orchestrator: str, instance_id: str, job: Traced) -> bool:
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

    async def forget(self, user_id: str, session_ids: Sequence[str], *, wait_seconds: float = 0.0) -> ForgetProgress:
        """Stop, delete and purge everything of the user in the task hub, in passes, for up to ``wait_seconds``.

        Each pass lists the user's orchestrations (their ids start with ``names.user_prefix``) and session entities
        (``@session@`` + ``names.user_entity_prefix``) through the management API, every page of them; entities of
        ``session_ids`` the listing did not show are read one by one (a back end whose instance query leaves
        entities out). A running orchestration is terminated; a finished one is purged once it has been quiet for
        ``QUIET_SECONDS``; an existing entity is signalled ``delete``, and an entity row without state is purged.
        Passes go on until one finds nothing left or the time is up; what is left is reported as pending.
        """
        management = instance_management(self._client)
        run = _ForgetRun()
        deadline = time.monotonic() + wait_seconds
        try:
            while True:
                progress = await self._forget_pass(management, user_id, session_ids, run)
                remaining = deadline - time.monotonic()
                if progress.complete or remaining <= 0:
                    return progress
                await asyncio.sleep(min(FORGET_PASS_PAUSE_SECONDS, remaining))
        finally:
            await management.aclose()

    async def _forget_pass(
        self, management: InstanceManagement, user_id: str, session_ids: Sequence[str], run: _ForgetRun
    ) -> ForgetProgress:
        instances = await management.list_instances(names.user_prefix(user_id))
        entities = await management.list_instances(
            entity_instance_id(names.SESSION_ENTITY, names.user_entity_prefix(user_id))
        )
        # The first pass reads the entities of the sessions the store knew of, later passes those met before.
        known = {_instance_id(names.session_entity(user_id, s)) for s in session_ids} if not run.entities else set()
        entities += await self._unlisted_entities(known | run.entities, {e.instance_id for e in entities})
        quiet = timedelta(seconds=QUIET_SECONDS)
        now = datetime.now(UTC)
        instances_pending = 0
        for instance in instances:
            if instance.running:
                await management.terminate(instance.instance_id, FORGET_REASON)
                instances_pending += 1
            elif instance.last_updated is not None and now - instance.last_updated < quiet:
                instances_pending += 1  # what it sent last may still be on its way
            elif await management.purge(instance.instance_id):
                run.purged.add(instance.instance_id)
        entities_pending = 0
        for entity in entities:
            run.entities.add(entity.instance_id)
            if entity.entity_exists is False:
                await management.purge(entity.instance_id)  # Azure Storage keeps a deleted entity's row
                continue
            entities_pending += 1
            signalled = run.signalled.get(entity.instance_id)
            if signalled is None or time.monotonic() - signalled >= QUIET_SECONDS:
                await self._client.signal_entity(_entity_id(entity.instance_id), names.DELETE)
                run.signalled[entity.instance_id] = time.monotonic()
        return ForgetProgress(
            instances_purged=len(run.purged),
            entities_deleted=len(run.entities),
            instances_pending=instances_pending,
            entities_pending=entities_pending,
        )

    async def _unlisted_entities(self, candidates: set[str], listed: set[str]) -> list[InstanceInfo]:
        """The entities among ``candidates`` (instance ids) that the listing did not show and that exist."""
        found = []
        for instance_id in sorted(candidates - listed):
            response = await self._client.read_entity_state(_entity_id(instance_id))
            if response.entity_exists:
                found.append(InstanceInfo(instance_id=instance_id, runtime_status="Running", entity_exists=True))
        return found

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
