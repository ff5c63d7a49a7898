"""The app's Durable functions on the local host, in this process: devhost's durable back end on a temporary SQLite
task hub, and the SDK's own ``DurableOrchestrationClient`` on its binding.

A ``TaskHub`` started with ``running=False`` leaves the back end stopped: orchestrations the app starts stay Pending
and signals stay queued, as when no durable worker has picked them up yet (``resume()`` starts it, ``pause()`` stops
it taking work again). A running one runs everything as devhost does, and ``settle()`` waits until what was started
has run to its end. The client records what the app asked of it (starts, purges by filter, terminations), which
the task hub cannot show once an instance has been replaced or purged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus
from azure.durable_functions.models.PurgeHistoryResult import PurgeHistoryResult

from devhost import DevHost, HostOptions
from devhost.engine import DurableEngine
from devhost.history import Event, EventType
from orchestrations.management import InstanceInfo, InstanceManagement

REPO_ROOT = Path(__file__).resolve().parents[2]
HUB_NAME = "FunctionsTests"
NEVER = "0 0 0 1 1 *"  # a cleanup schedule that does not fire during a test run: tests call the timer themselves


class RecordingClient(df.DurableOrchestrationClient):
    """The SDK's client on the host's binding, recording the starts, purges by filter and terminations asked of it."""

    def __init__(self, binding: str) -> None:
        super().__init__(binding)
        self.starts: list[tuple[str, str, Any]] = []
        self.purge_filters: list[dict[str, Any]] = []
        self.terminated: list[tuple[str, str]] = []  # through the management API (``RecordingManagement``)
        self.on_terminate: Callable[[], Awaitable[None]] | None = None  # called after each termination asked

    async def start_new(
        self, orchestration_function_name: str, instance_id: str | None = None, client_input: Any = None, **kwargs: Any
    ) -> str:
        started = str(await super().start_new(orchestration_function_name, instance_id, client_input, **kwargs))
        self.starts.append((orchestration_function_name, started, client_input))
        return started

    async def purge_instance_history_by(
        self,
        created_time_from: datetime | None = None,
        created_time_to: datetime | None = None,
        runtime_status: list[Any] | None = None,
    ) -> PurgeHistoryResult:
        result = await super().purge_instance_history_by(created_time_from, created_time_to, runtime_status)
        self.purge_filters.append({"from": created_time_from, "to": created_time_to, "statuses": runtime_status})
        return result


class RecordingManagement:
    """The app's own management API client, recording the terminations on the client it was made for."""

    def __init__(self, inner: InstanceManagement, client: Any) -> None:
        self._inner = inner
        self._client = client

    async def list_instances(self, prefix: str) -> list[InstanceInfo]:
        return await self._inner.list_instances(prefix)

    async def terminate(self, instance_id: str, reason: str) -> None:
        await self._inner.terminate(instance_id, reason)
        if isinstance(self._client, RecordingClient):
            self._client.terminated.append((instance_id, reason))
            if self._client.on_terminate is not None:
                await self._client.on_terminate()

    async def purge(self, instance_id: str) -> int:
        return await self._inner.purge(instance_id)

    async def aclose(self) -> None:
        await self._inner.aclose()


class TaskHub:
    """One in-process devhost serving the app's Durable functions, and a recording client on it."""

    def __init__(self, host: DevHost, running: bool) -> None:
        self.host = host
        self.running = running
        self.client = self.new_client()

    @classmethod
    async def start(cls, state_dir: Path, *, running: bool) -> TaskHub:
        """A host on ``state_dir``: the repository's host.json, ``function_app``, the environment's settings only."""
        options = HostOptions(
            app="function_app",
            script_root=REPO_ROOT,
            state_dir=state_dir,
            port=0,
            enable_auth=True,  # the binding's management URLs carry a key, as the extension's do on Azure
            local_settings=False,
            easy_auth=False,
            durable_latency_ms=0,
        )
        host = DevHost(options)
        try:
            await host.start(durable=running)
        except BaseException:
            await host.stop()
            raise
        return cls(host, running)

    @classmethod
    @asynccontextmanager
    async def started(cls, state_dir: Path, *, running: bool) -> AsyncIterator[TaskHub]:
        """``start``, and ``stop`` on the way out."""
        hub = await cls.start(state_dir, running=running)
        try:
            yield hub
        finally:
            await hub.stop()

    async def stop(self) -> None:
        await self.host.stop()

    @property
    def engine(self) -> DurableEngine:
        engine = self.host.engine
        assert engine is not None
        return engine

    def new_client(self) -> RecordingClient:
        """Another client on the same task hub (another worker's binding), with its own records."""
        return RecordingClient(self.host.client_binding)

    async def call(self, client_function: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        """Call a function's body with this hub's client (``client=``); on a running hub, return once what the call
        started has run to its end."""
        returned = await client_function(client=kwargs.pop("client", self.client), **kwargs)
        if self.running:
            await self.settle()
        return returned

    async def resume(self) -> None:
        """Start the durable back end: what was started or signalled meanwhile runs now."""
        await self.host.start_durable()
        self.running = True

    async def pause(self) -> None:
        """Let what runs finish, then stop taking work: orchestrations started from now on stay Pending."""
        await self.settle()
        await self.host.pause_durable()
        self.running = False

    async def settle(self) -> None:
        """Wait until everything started or signalled has run to its end."""
        await self.engine.wait_idle()

    # -- what the task hub holds, through the client

    async def instances(self) -> dict[str, DurableOrchestrationStatus]:
        """The orchestration instances by id (entities left out), as the instance query lists them."""
        statuses = await self.client.get_status_by()
        assert len(statuses) < 100, "the SDK's get_status_by reads the first page only"
        return {s.instance_id: s for s in statuses if not s.instance_id.startswith("@")}

    async def statuses(self) -> dict[str, str]:
        """The orchestration instances' runtime statuses by id."""
        return {i: s.runtime_status.value for i, s in (await self.instances()).items()}

    async def entities(self) -> set[str]:
        """The existing entities' instance ids (``@name@key``)."""
        return {s.instance_id for s in await self.client.get_status_by(instance_id_prefix="@")}

    async def entity_state(self, name: str, key: str) -> Any:
        """An entity's state, None when it does not exist."""
        response = await self.client.read_entity_state(df.EntityId(name, key))
        return response.entity_state if response.entity_exists else None

    def put_instance(self, instance_id: str, name: str, status: str, created: datetime, value: Any = None) -> None:
        """An instance in a given state, created (and last updated) at ``created``, with no history."""
        self.engine.store.put_instance(
            instance_id, name, status, created_time=created.timestamp(), input_text=json.dumps(value)
        )

    def payloads(self, instance_id: str) -> list[Any]:
        """Every value the instance's history carries through Durable: its input, each activity's input, each entity
        operation's input and result, its output (not the activities' results)."""
        found: list[Any] = []
        for event in self.engine.store.load_history(instance_id):
            found += _payloads_of(event)
        return found


def _payloads_of(event: Event) -> list[Any]:
    kind = event["EventType"]
    if kind in (EventType.EXECUTION_STARTED, EventType.TASK_SCHEDULED) and event.get("Input") is not None:
        return [json.loads(event["Input"])]
    if kind == EventType.EXECUTION_COMPLETED and event.get("Result") is not None:
        return [json.loads(event["Result"])]
    if kind == EventType.EVENT_SENT:  # an entity call or signal: the action's JSON text, queued as a JSON string
        request = json.loads(event["Input"])
        return [] if request["input"] is None else [json.loads(json.loads(request["input"]))]
    if kind == EventType.EVENT_RAISED:  # an entity's answer to a call
        return [json.loads(json.loads(event["Input"])["result"])]
    return []
