"""Drive the app's Durable functions through their real entry points, with the payloads the extension sends.

Nothing here mocks the SDK: entities get the batch JSON of the Durable extension (double-encoded inputs), and
orchestrators get a context JSON whose history is built event by event (see the protocol reference, sections 3a
and 3b). ``FakeDurableClient`` is an in-memory stand-in for ``DurableOrchestrationClient``: it applies entity
signals at once through the real entity function, records orchestration starts, and can run them with
``OrchestrationRunner`` (the orchestrator's replay loop, activities awaited inline, entity calls applied in order).
"""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus
from azure.durable_functions.models.EntityStateResponse import EntityStateResponse
from azure.durable_functions.models.PurgeHistoryResult import PurgeHistoryResult
from azure.functions.decorators.core import Trigger

from orchestrations.management import InstanceInfo

OUT_OF_PROC_LABEL = "$OutOfProcData$:"

# EventType numbers of DTFx history events (protocol reference, 3a).
EXECUTION_STARTED = 0
TASK_SCHEDULED = 4
TASK_COMPLETED = 5
TASK_FAILED = 6
TIMER_CREATED = 10
TIMER_FIRED = 11
ORCHESTRATOR_STARTED = 12
ORCHESTRATOR_COMPLETED = 13
EVENT_SENT = 14
EVENT_RAISED = 15

# actionType numbers of orchestrator actions.
CALL_ACTIVITY = 0
CALL_ACTIVITY_WITH_RETRY = 1
CREATE_TIMER = 5
CALL_ENTITY = 7
SIGNAL_ENTITY = 9
WHEN_ANY = 11
WHEN_ALL = 12

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)

BINDING = {
    "taskHubName": "TestHubName",
    "creationUrls": {
        "createNewInstancePostUri": "http://localhost:7071/runtime/webhooks/durabletask/orchestrators/{functionName}"
        "[/{instanceId}]?code=key",
        "createAndWaitOnNewInstancePostUri": "http://localhost:7071/runtime/webhooks/durabletask/orchestrators/"
        "{functionName}[/{instanceId}]?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}&code=key",
    },
    "managementUrls": {
        "id": "INSTANCEID",
        "statusQueryGetUri": "http://localhost:7071/runtime/webhooks/durabletask/instances/INSTANCEID"
        "?taskHub=TestHubName&connection=Storage&code=key",
        "sendEventPostUri": "http://localhost:7071/runtime/webhooks/durabletask/instances/INSTANCEID/raiseEvent/"
        "{eventName}?taskHub=TestHubName&connection=Storage&code=key",
        "terminatePostUri": "http://localhost:7071/runtime/webhooks/durabletask/instances/INSTANCEID/terminate"
        "?reason={text}&taskHub=TestHubName&connection=Storage&code=key",
        "rewindPostUri": "http://localhost:7071/runtime/webhooks/durabletask/instances/INSTANCEID/rewind"
        "?reason={text}&taskHub=TestHubName&connection=Storage&code=key",
        "purgeHistoryDeleteUri": "http://localhost:7071/runtime/webhooks/durabletask/instances/INSTANCEID"
        "?taskHub=TestHubName&connection=Storage&code=key",
        "restartPostUri": "http://localhost:7071/runtime/webhooks/durabletask/instances/INSTANCEID/restart"
        "?taskHub=TestHubName&connection=Storage&code=key",
        "suspendPostUri": "http://localhost:7071/runtime/webhooks/durabletask/instances/INSTANCEID/suspend"
        "?reason={text}&taskHub=TestHubName&connection=Storage&code=key",
        "resumePostUri": "http://localhost:7071/runtime/webhooks/durabletask/instances/INSTANCEID/resume"
        "?reason={text}&taskHub=TestHubName&connection=Storage&code=key",
    },
    "baseUrl": "http://localhost:7071/runtime/webhooks/durabletask",
    "requiredQueryStringParameters": "code=key",
    "rpcBaseUrl": "http://127.0.0.1:17071/durabletask/",
}


def iso(moment: datetime) -> str:
    """A timestamp as the extension writes it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def scheduler_id(name: str, key: str) -> str:
    """``@name@key``: how the extension names an entity instance."""
    return f"@{name.lower()}@{key}"


# -- entities ---------------------------------------------------------------------------------------------------


def encode_entity_input(value: Any) -> str | None:
    """The batch's ``input`` of one operation: JSON text of a JSON string of the value (the extension's encoding)."""
    return None if value is None else json.dumps(json.dumps(value))


def entity_batch(name: str, key: str, state: Any, operations: list[tuple[str, Any]], *, signal: bool = True) -> str:
    """The entity trigger value: ``state`` is the state (a value, or None for an entity that does not exist)."""
    return json.dumps(
        {
            "self": {"name": name, "key": key},
            "exists": state is not None,
            "state": None if state is None else json.dumps(state),
            "batch": [
                {"name": op, "input": encode_entity_input(value), "isSignal": signal} for op, value in operations
            ],
        }
    )


@dataclass
class OperationResult:
    """One entry of an entity batch's ``results``, decoded."""

    is_error: bool
    value: Any


@dataclass
class BatchOutcome:
    """An entity batch's output, decoded."""

    raw: dict[str, Any]
    exists: bool
    state: Any
    results: list[OperationResult]


def run_entity(handle: Any, name: str, key: str, state: Any, operations: list[tuple[str, Any]]) -> BatchOutcome:
    """Call an entity's registered handle with one batch and decode its output."""
    output = json.loads(handle(context=entity_batch(name, key, state, operations)))
    results = [OperationResult(r["isError"], json.loads(r["result"])) for r in output["results"]]
    entity_state = output.get("entityState")
    return BatchOutcome(
        raw=output,
        exists=output["entityExists"],
        state=json.loads(entity_state) if entity_state is not None else None,
        results=results,
    )


# -- orchestrations ---------------------------------------------------------------------------------------------


class History:
    """A DTFx history for one orchestration instance, episode by episode (what the extension replays)."""

    def __init__(self, name: str, value: Any, instance_id: str = "inst-1", start: datetime = T0) -> None:
        self.name = name
        self.input_text = json.dumps(value)
        self.instance_id = instance_id
        self.clock = start
        self.events: list[dict[str, Any]] = []
        self._event(ORCHESTRATOR_STARTED)
        self._event(
            EXECUTION_STARTED,
            Name=name,
            Version="",
            Input=self.input_text,
            OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": "exec-1"},
        )

    def _event(self, event_type: int, event_id: int = -1, **fields: Any) -> None:
        self.events.append(
            {"EventType": event_type, "EventId": event_id, "IsPlayed": False, "Timestamp": iso(self.clock), **fields}
        )

    def new_episode(self, seconds: float = 1.0) -> History:
        """Close the episode played so far and open the next one (whose events are new to the orchestrator)."""
        for event in self.events:
            event["IsPlayed"] = True
        self._event(ORCHESTRATOR_COMPLETED)
        self.clock += timedelta(seconds=seconds)
        self._event(ORCHESTRATOR_STARTED)
        return self

    def task_scheduled(self, event_id: int, name: str, value: Any = None) -> History:
        self._event(TASK_SCHEDULED, event_id, Name=name, Version="", Input=json.dumps(value))
        return self

    def task_completed(self, event_id: int, result: Any) -> History:
        self._event(TASK_COMPLETED, TaskScheduledId=event_id, Result=json.dumps(result))
        return self

    def task_failed(self, event_id: int, reason: str, details: str = "") -> History:
        self._event(TASK_FAILED, TaskScheduledId=event_id, Reason=reason, Details=details)
        return self

    def timer(self, event_id: int, seconds: float = 0.0) -> History:
        fire_at = iso(self.clock + timedelta(seconds=seconds))
        self._event(TIMER_CREATED, event_id, FireAt=fire_at)
        self._event(TIMER_FIRED, TimerId=event_id, FireAt=fire_at)
        return self

    def event_sent(self, event_id: int, target: str, operation: str, input_text: str | None, signal: bool) -> str:
        """Record a call or signal to an entity; returns the request id its response must carry."""
        request_id = str(uuid.uuid4())
        request = {
            "op": operation,
            "signal": signal,
            "input": input_text,
            "id": request_id,
            "parent": self.instance_id,
            "parentExecution": "exec-1",
        }
        self._event(EVENT_SENT, event_id, InstanceId=target, Name="op", Input=json.dumps(request))
        return request_id

    def event_raised(self, request_id: str, result_text: str, error: bool = False) -> History:
        response: dict[str, Any] = {"result": result_text}
        if error:
            response["exceptionType"] = "Error"
        self._event(EVENT_RAISED, Name=request_id, Input=json.dumps(response))
        return self

    def entity_call(self, event_id: int, target: str, operation: str, value: Any, result: Any) -> History:
        """A call to an entity and its answer (``result`` is the operation's result value)."""
        request_id = self.event_sent(event_id, target, operation, json.dumps(value), signal=False)
        return self.event_raised(request_id, json.dumps(result))

    def signal(self, event_id: int, target: str, operation: str, value: Any) -> History:
        self.event_sent(event_id, target, operation, json.dumps(value), signal=True)
        return self

    def context(self) -> str:
        """The orchestration trigger value."""
        return json.dumps(
            {
                "history": self.events,
                "input": self.input_text,
                "instanceId": self.instance_id,
                "isReplaying": False,
                "parentInstanceId": None,
                "upperSchemaVersion": 1,
                "upperSchemaVersionNew": 2,
            }
        )


class OrchestrationFailed(Exception):
    """The orchestrator failed: its handle raised with the ``$OutOfProcData$`` state."""

    def __init__(self, message: str, state: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.state = state


def run_orchestrator(handle: Any, history: History) -> dict[str, Any]:
    """One episode: call the orchestrator's registered handle; a failure raises ``OrchestrationFailed``."""
    try:
        return json.loads(handle(context=history.context()))
    except Exception as exc:
        text = str(exc)
        if OUT_OF_PROC_LABEL not in text:
            raise
        message, _, data = text.partition(OUT_OF_PROC_LABEL)
        raise OrchestrationFailed(message.strip(), json.loads(data)) from exc


def actions_of(output: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The cumulative actions of an orchestrator output (schema V2: one inner list)."""
    actions = output["actions"]
    assert len(actions) == 1, actions
    return list(actions[0])


def flat_actions(output: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The actions with WhenAll/WhenAny flattened, in sequence-id order.

    The SDK wraps a ``call_activity_with_retry`` in a one-child WhenAll (its retryable task is a WhenAll task).
    """
    flat: list[dict[str, Any]] = []

    def walk(action: dict[str, Any]) -> None:
        if action["actionType"] in (WHEN_ANY, WHEN_ALL):
            for child in action["compoundActions"]:
                walk(child)
        else:
            flat.append(action)

    for action in actions_of(output):
        walk(action)
    return flat


# -- the fake client --------------------------------------------------------------------------------------------


@dataclass
class Instance:
    """One orchestration instance as the fake task hub keeps it."""

    name: str
    instance_id: str
    input: Any
    created: datetime
    status: str = "Pending"
    output: Any = None
    error: str | None = None
    history: History | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)

    def status_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "instanceId": self.instance_id,
            "runtimeStatus": self.status,
            "input": json.dumps(self.input),
            "customStatus": None,
            "output": self.output if self.error is None else self.error,
            "createdTime": self.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastUpdatedTime": self.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


@dataclass
class EntityOperation:
    """One operation the fake client delivered to an entity, with its outcome."""

    entity: str
    operation: str
    input: Any
    signal: bool
    is_error: bool
    result: Any


class AppFunctions:
    """The app's indexed functions, by Durable name."""

    def __init__(self, functions: Mapping[str, Any]) -> None:
        self.by_name = dict(functions)
        self.entities: dict[str, Any] = {}
        self.orchestrators: dict[str, Any] = {}
        self.activities: dict[str, tuple[Any, str]] = {}
        for fn in functions.values():
            trigger: Trigger = fn.get_trigger()
            if trigger.type == "entityTrigger":
                self.entities[trigger.entity_name] = fn.get_user_function()
            elif trigger.type == "orchestrationTrigger":
                self.orchestrators[trigger.orchestration] = fn.get_user_function()
            elif trigger.type == "activityTrigger":
                self.activities[trigger.activity] = (fn.get_user_function(), trigger.name)


class FakeDurableClient:
    """An in-memory ``DurableOrchestrationClient`` over the app's real entity, orchestrator and activity functions.

    * Entity signals are applied at once, one operation per batch, with the extension's encoding.
    * ``start_new`` records the start; with ``run=True`` it also runs the orchestration to its end (inline).
    * Starting an id that is Pending or Running fails, as host.json's ``overridableExistingInstanceStates``
      ``NonRunningStates`` makes the extension do; a finished one is replaced.
    """

    def __init__(self, app: AppFunctions, *, run: bool = False, activity_failures: dict[str, int] | None = None):
        self.app = app
        self.run_orchestrations = run
        # activity name -> how many more calls of it fail (to exercise retries in the runner)
        self.activity_failures = dict(activity_failures or {})
        self.entities: dict[str, str] = {}  # scheduler id -> state JSON text
        self.operations: list[EntityOperation] = []
        self.instances: dict[str, Instance] = {}
        self.starts: list[tuple[str, str, Any]] = []
        self.terminated: list[tuple[str, str]] = []
        self.purged: list[str] = []
        self.purge_filters: list[dict[str, Any]] = []
        self.activity_calls: list[tuple[str, Any]] = []
        self._real = df.DurableOrchestrationClient(json.dumps(BINDING))
        self.management = FakeInstanceManagement(self)

    # entities
    def entity_state(self, name: str, key: str) -> Any:
        text = self.entities.get(scheduler_id(name, key))
        return None if text is None else json.loads(text)

    def set_entity_state(self, name: str, key: str, state: Any) -> None:
        self.entities[scheduler_id(name, key)] = json.dumps(state)

    def apply(self, name: str, key: str, operation: str, input_text: str | None, *, signal: bool) -> EntityOperation:
        """Run one operation through the real entity function and keep the state it leaves."""
        sid = scheduler_id(name, key)
        state_text = self.entities.get(sid)
        batch = json.dumps(
            {
                "self": {"name": name, "key": key},
                "exists": state_text is not None,
                "state": state_text,
                "batch": [
                    {
                        "name": operation,
                        "input": None if input_text is None else json.dumps(input_text),
                        "isSignal": signal,
                    }
                ],
            }
        )
        output = json.loads(self.app.entities[name](context=batch))
        if output["entityExists"]:
            self.entities[sid] = output["entityState"]
        else:
            self.entities.pop(sid, None)
        (result,) = output["results"]
        done = EntityOperation(
            sid,
            operation,
            None if input_text is None else json.loads(input_text),
            signal,
            result["isError"],
            json.loads(result["result"]),
        )
        self.operations.append(done)
        return done

    async def read_entity_state(self, entityId: df.EntityId, *args: Any, **kwargs: Any) -> EntityStateResponse:
        text = self.entities.get(scheduler_id(entityId.name, entityId.key))
        if text is None:
            return EntityStateResponse(False)
        return EntityStateResponse(True, json.loads(text))

    async def signal_entity(
        self, entityId: df.EntityId, operation_name: str, operation_input: Any = None, *args: Any, **kwargs: Any
    ) -> None:
        # The client sends no body for a falsy input, so the operation arrives with input null.
        input_text = json.dumps(operation_input) if operation_input else None
        self.apply(entityId.name, entityId.key, operation_name, input_text, signal=True)

    # orchestrations
    async def start_new(
        self, orchestration_function_name: str, instance_id: str | None = None, client_input: Any = None, **_: Any
    ) -> str:
        if orchestration_function_name not in self.app.orchestrators:
            raise Exception(f"The function '{orchestration_function_name}' doesn't exist")
        instance_id = instance_id or uuid.uuid4().hex
        existing = self.instances.get(instance_id)
        if existing is not None and existing.status in ("Pending", "Running"):
            raise Exception(f"An instance with ID '{instance_id}' already exists.")
        self.instances[instance_id] = Instance(
            orchestration_function_name, instance_id, client_input, datetime.now(UTC)
        )
        self.starts.append((orchestration_function_name, instance_id, client_input))
        if self.run_orchestrations:
            await self.run(instance_id)
        return instance_id

    async def run(self, instance_id: str) -> Instance:
        """Run a started orchestration to its end."""
        instance = self.instances[instance_id]
        await OrchestrationRunner(self, instance).run()
        return instance

    async def run_pending(self) -> None:
        for instance in list(self.instances.values()):
            if instance.status == "Pending":
                await self.run(instance.instance_id)

    async def get_status(self, instance_id: str, *args: Any, **kwargs: Any) -> DurableOrchestrationStatus:
        instance = self.instances.get(instance_id)
        if instance is None:
            return DurableOrchestrationStatus.from_json("")  # what the client makes of the empty 404 body
        return DurableOrchestrationStatus.from_json(instance.status_json())

    async def get_status_by(
        self,
        created_time_from: datetime | None = None,
        created_time_to: datetime | None = None,
        runtime_status: list[Any] | None = None,
        instance_id_prefix: str | None = None,
    ) -> list[DurableOrchestrationStatus]:
        return [
            DurableOrchestrationStatus.from_json(i.status_json())
            for i in self._matching(created_time_from, created_time_to, runtime_status, instance_id_prefix)
        ]

    def _matching(
        self,
        created_from: datetime | None,
        created_to: datetime | None,
        statuses: list[Any] | None,
        prefix: str | None,
    ) -> list[Instance]:
        wanted = None if statuses is None else {getattr(s, "value", s) for s in statuses}
        return [
            i
            for i in self.instances.values()
            if (created_from is None or i.created >= created_from)
            and (created_to is None or i.created <= created_to)
            and (wanted is None or i.status in wanted)
            and (prefix is None or i.instance_id.startswith(prefix))
        ]

    def create_http_management_payload(self, instance_id: str) -> dict[str, str]:
        return self._real.create_http_management_payload(instance_id)

    async def terminate(self, instance_id: str, reason: str) -> None:
        instance = self.instances.get(instance_id)
        if instance is None:
            raise Exception(f"No instance with ID '{instance_id}' found.")
        self.terminated.append((instance_id, reason))
        if instance.status in ("Pending", "Running"):
            instance.status = "Terminated"

    async def purge_instance_history(self, instance_id: str) -> PurgeHistoryResult:
        deleted = self.instances.pop(instance_id, None) is not None
        if deleted:
            self.purged.append(instance_id)
        return PurgeHistoryResult.from_json({"instancesDeleted": int(deleted)})

    async def purge_instance_history_by(
        self,
        created_time_from: datetime | None = None,
        created_time_to: datetime | None = None,
        runtime_status: list[Any] | None = None,
    ) -> PurgeHistoryResult:
        if created_time_from is None:  # as the SDK's client: the extension needs a lower bound
            raise ValueError("created_time_from is required when purging instance history")
        self.purge_filters.append({"from": created_time_from, "to": created_time_to, "statuses": runtime_status})
        doomed = self._matching(created_time_from, created_time_to, runtime_status, None)
        for instance in doomed:
            del self.instances[instance.instance_id]
            self.purged.append(instance.instance_id)
        return PurgeHistoryResult.from_json({"instancesDeleted": len(doomed)})


class FakeInstanceManagement:
    """The management API over the fake task hub (``orchestrations.management.InstanceManagement``).

    It lists entities as instances too (``@name@key``, Running, existing), as the Azure Storage back end does.
    """

    def __init__(self, client: FakeDurableClient) -> None:
        self.client = client
        self.listings: list[str] = []

    async def list_instances(self, prefix: str) -> list[InstanceInfo]:
        self.listings.append(prefix)
        found = [
            InstanceInfo(instance_id=i.instance_id, runtime_status=i.status, last_updated=i.created)
            for i in self.client.instances.values()
            if i.instance_id.startswith(prefix)
        ]
        found += [
            InstanceInfo(instance_id=sid, runtime_status="Running", entity_exists=True)
            for sid in self.client.entities
            if sid.startswith(prefix)
        ]
        return sorted(found, key=lambda i: i.instance_id)

    async def terminate(self, instance_id: str, reason: str) -> None:
        if instance_id in self.client.instances:
            await self.client.terminate(instance_id, reason)

    async def purge(self, instance_id: str) -> int:
        if instance_id.startswith("@"):
            return int(self.client.entities.pop(instance_id, None) is not None)
        return int((await self.client.purge_instance_history(instance_id)).instances_deleted)

    async def aclose(self) -> None:
        pass


class OrchestrationRunner:
    """Replays one orchestration until it is done: the extension's loop, without its storage.

    Each new action takes the next sequence id; its completion goes into the next episode. Activities run inline
    (awaited), entity calls and signals are applied through the fake client in order. A failing
    ``CallActivityWithRetry`` gets the retry timers DTFx would schedule, up to its ``maxNumberOfAttempts``.
    """

    MAX_EPISODES = 200

    def __init__(self, client: FakeDurableClient, instance: Instance) -> None:
        self.client = client
        self.instance = instance
        self.handle = client.app.orchestrators[instance.name]
        self.history = History(instance.name, instance.input, instance.instance_id, datetime.now(UTC))
        instance.history = self.history
        self.next_id = 0
        self.seen_actions = 0

    async def run(self) -> None:
        self.instance.status = "Running"
        for _ in range(self.MAX_EPISODES):
            try:
                output = run_orchestrator(self.handle, self.history)
            except OrchestrationFailed as failure:
                self.instance.status, self.instance.error = "Failed", failure.message
                self.instance.actions = actions_of(failure.state)
                return
            actions = actions_of(output)
            self.instance.actions = actions
            new = actions[self.seen_actions :]
            self.seen_actions = len(actions)
            if output["isDone"]:
                # Actions of the last episode (signals) are sent too.
                for action in new:
                    await self._execute(action)
                self.instance.status, self.instance.output = "Completed", output.get("output")
                return
            assert new, f"orchestration {self.instance.name} is stuck: no new action and not done"
            self.history.new_episode(0.001)
            for action in new:
                await self._execute(action)
        raise AssertionError(f"orchestration {self.instance.name} did not finish")

    def _take_id(self) -> int:
        event_id = self.next_id
        self.next_id += 1
        return event_id

    async def _execute(self, action: dict[str, Any]) -> None:
        kind = action["actionType"]
        if kind in (WHEN_ANY, WHEN_ALL):
            for child in action["compoundActions"]:
                await self._execute(child)
        elif kind in (CALL_ACTIVITY, CALL_ACTIVITY_WITH_RETRY):
            await self._activity(action)
        elif kind in (CALL_ENTITY, SIGNAL_ENTITY):
            event_id = self._take_id()
            _, name, key = action["instanceId"].split("@", 2)
            signal = kind == SIGNAL_ENTITY
            request_id = self.history.event_sent(
                event_id, action["instanceId"], action["operation"], action["input"], signal
            )
            done = self.client.apply(name, key, action["operation"], action["input"], signal=signal)
            if not signal:
                self.history.event_raised(request_id, json.dumps(done.result), error=done.is_error)
        elif kind == CREATE_TIMER:
            self.history.timer(self._take_id())
        else:
            raise AssertionError(f"the runner does not support action {action}")

    async def _activity(self, action: dict[str, Any]) -> None:
        name = action["functionName"]
        attempts = action.get("retryOptions", {}).get("maxNumberOfAttempts", 1)
        value = json.loads(action["input"])
        for attempt in range(1, attempts + 1):
            event_id = self._take_id()
            self.history.task_scheduled(event_id, name, value)
            try:
                result = await self._call_activity(name, value)
            except Exception as exc:
                self.history.task_failed(event_id, f"Activity function '{name}' failed: {exc!r}", "")
                if action["actionType"] == CALL_ACTIVITY:
                    return
                # DTFx waits for a retry timer after every failed attempt, the last one included.
                self.history.timer(self._take_id())
                if attempt == attempts:
                    return
                continue
            self.history.task_completed(event_id, result)
            return

    async def _call_activity(self, name: str, value: Any) -> Any:
        self.client.activity_calls.append((name, value))
        if self.client.activity_failures.get(name, 0) > 0:
            self.client.activity_failures[name] -= 1
            raise RuntimeError(f"{name} failed (injected)")
        fn, input_name = self.client.app.activities[name]
        result = fn(**{input_name: value})
        if inspect.isawaitable(result):
            result = await result
        return result


# -- sample data ------------------------------------------------------------------------------------------------

USER, SESSION = "alice", "s1"
