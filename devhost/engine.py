"""The durable back end: orchestration episodes, activities, entities and durable timers, all on one event loop.

It runs in the durable worker process by default (`devhost.worker`; the host's own process with `--single-process`),
apart from the HTTP triggers, as Azure's Flex Consumption plan runs the `durable` group apart from the `http` one.

How work flows (every arrow is one SQLite transaction, committed before anything depends on it):

* a client start inserts the instance row and its `ExecutionStarted` message;
* an orchestration *episode* takes the instance's visible messages, appends `OrchestratorStarted` + those events
  to the history, calls the SDK's own orchestrator handle with the whole history, replays the returned actions
  (`devhost.replay`) to find the new work, then commits in one transaction: the consumed messages deleted, the new
  history events (scheduling events, `OrchestratorCompleted`, and the completion if any), the new work items
  (activity rows, timer messages that become visible at their fire time, entity messages) and the instance's status;
* an activity runs (sync ones in the thread pool); its row is deleted and its `TaskCompleted`/`TaskFailed` message
  inserted in one transaction. A crash before that commit runs the activity again on restart (at-least-once);
* an entity batch takes the entity's queued operations in arrival order, runs the SDK's entity handle, and commits
  the new state, the consumed operations and the responses to calling orchestrations in one transaction.

Episodes run inline on the loop (they are pure and fast) and are serialized per instance by construction: an
instance is only run again after its previous episode has committed. Writes go through a group commit
(`store.GroupCommitter`): everything submitted during one loop iteration commits in one transaction, each write in
its own savepoint, and nothing is acknowledged or acted on before that commit.

Every message row (inbox, activities, entity_messages) has a `visible_at`: nothing consumes it earlier. Without
`--durable-latency` it is 0 (at once), except for durable timers (their fire time). With a
latency (`devhost.latency.QueueLatency`), every message is visible `latency + U(0, jitter)` after it is committed
(timers: after their fire time), as when it rides an Azure Storage queue; the dispatcher's timer heap wakes its
consumer then, and `start()` puts whatever is still invisible back on the heap after a restart. Consumers take
visible messages in the order they became visible, so messages from different senders may overtake each other;
entity operations from one sender to one entity never do (see `_entity_visible_at`). Client management calls
answer from the committed rows at once: a started instance is Pending until its ExecutionStarted is delivered, and
entity state is the last one an entity batch committed.

It emulates what this app and devhost's tests use: starts, status and instance queries, terminate, purges,
activities with retries, durable timers, external events, entity calls and signals, `task_all`. Orchestrators that use
sub-orchestrations, continue-as-new, `task_any` or `call_http` fail with a message naming the feature
(`devhost.replay.NotEmulatedError`); the Durable HTTP API answers suspend, resume, rewind and restart with 501.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from devhost.functions import FunctionIndex
from devhost.history import (
    Event,
    EventType,
    format_sdk_time,
    new_event,
    next_orchestrator_time,
    utcnow,
    with_played_flags,
)
from devhost.invocation import InvocationContext, invocation
from devhost.latency import QueueLatency
from devhost.quiet import QuietGate
from devhost.replay import NonDeterminismError, NotEmulatedError, Replayer, ReplayResult, Work
from devhost.store import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    ActivityItem,
    EntityMessage,
    GroupCommitter,
    InboxMessage,
    Instance,
    Store,
)

logger = logging.getLogger(__name__)

OUT_OF_PROC_LABEL = "$OutOfProcData$:"
ENTITY_BATCH_SIZE = 50
EPISODES_PER_COMMIT = 64
RETRY_DELAY = 5.0  # seconds before an episode or entity batch that hit a host error is tried again
_INVALID_ID_CHARACTERS = set("/\\#?")


class DurableError(Exception):
    """A client request the back end refuses; `status` is the HTTP status the Durable HTTP API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Episode:
    """What an orchestration episode writes (in one transaction), and what to do once that is committed."""

    write: Callable[[Any], Any]
    after_commit: Callable[[], None]


def _nothing() -> None:
    return None


def _dropping(messages: list[InboxMessage]) -> Episode | None:
    """An episode that only deletes messages nothing will consume (None when there are none)."""
    if not messages:
        return None
    ids = [(m.id,) for m in messages]
    return Episode(lambda db: db.executemany("DELETE FROM inbox WHERE id = ?", ids), _nothing)


@dataclass
class Followups:
    """What a committed write sets going: activities to start, and orchestrations and entities to run."""

    activities: list[ActivityItem] = field(default_factory=list)
    wake: list[tuple[float, str, str]] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)

    def deliver(self, kind: str, target: str, at: float) -> None:
        """Run `target` (kind "instance" or "entity") for a message visible at `at` (0.0: at once)."""
        if at:
            self.wake.append((at, kind, target))
        elif kind == "instance":
            self.instances.append(target)
        else:
            self.entities.append(target)


@dataclass
class Outcome:
    """How an orchestration episode leaves its instance."""

    status: str
    output: str | None
    custom_status: str | None
    error: str | None
    done_event: Event | None = None


@dataclass
class PurgeResult:
    """How many instances a purge deleted."""

    instances_deleted: int


def scheduler_id(entity_name: str, entity_key: str) -> str:
    """`@name@key`: the name lower-cased, the key as is."""
    return f"@{entity_name.lower()}@{entity_key}"


def split_scheduler_id(entity_id: str) -> tuple[str, str]:
    """(name, key) of an `@name@key` scheduler id."""
    _, name, key = entity_id.split("@", 2)
    return name, key


def queued_entity_input(action_input: str | None) -> str | None:
    """An orchestration's entity operation input as it is queued and batched: the action's JSON text, JSON-encoded."""
    return json.dumps(action_input) if action_input is not None else None


def entity_batch_request(entity_id: str, state: str | None, operations: Sequence[EntityMessage]) -> str:
    """The entity trigger's value for one batch, as the extension sends it.

    Args:
        entity_id: the entity's scheduler id (`@name@key`).
        state: its state as JSON text, None when it does not exist.
        operations: the queued operations, in arrival order (inputs as queued, see `queued_entity_input`).
    """
    name, key = split_scheduler_id(entity_id)
    return json.dumps(
        {
            "self": {"name": name, "key": key},
            "exists": state is not None,
            "state": state,
            "batch": [{"name": m.operation, "input": m.input, "isSignal": m.is_signal} for m in operations],
        }
    )


@dataclass
class EntityBatchResult:
    """An entity function's answer to one batch: whether the entity exists after it, its state, one result each."""

    exists: bool
    state: str | None  # JSON text
    results: list[dict[str, Any]]  # {"isError": bool, "result": JSON text}, one per operation
    response: dict[str, Any]  # the whole answer (`signals` included)


def read_entity_batch_response(returned: str) -> EntityBatchResult:
    """Decode what an entity function returned for a batch."""
    response = json.loads(returned)
    results = list(response.get("results") or [])
    return EntityBatchResult(bool(response.get("entityExists")), response.get("entityState"), results, response)


def validate_instance_id(instance_id: str) -> None:
    r"""Instance ids as Azure Storage accepts them: 1-100 characters, no `/ \\ # ?` nor control characters."""
    if not instance_id or len(instance_id) > 100:
        raise DurableError(400, "Instance ID must be between 1 and 100 characters long")
    if any(ch in _INVALID_ID_CHARACTERS or ord(ch) < 32 for ch in instance_id):
        raise DurableError(400, f"Instance ID '{instance_id}' contains invalid characters")


class DurableEngine:
    """Runs orchestrations, activities and entities from the store; the Durable HTTP API calls its methods."""

    def __init__(
        self,
        store: Store,
        index: FunctionIndex,
        executor: Executor,
        function_directory: Path,
        latency: QueueLatency | None = None,
        quiet: QuietGate | None = None,
    ) -> None:
        self.store = store
        self._quiet = quiet  # background work waits for a quiet moment of the HTTP host (devhost.quiet)
        self.latency = latency or QueueLatency()
        self._committer = GroupCommitter(store)
        self.index = index
        self._executor = executor
        self._function_directory = function_directory
        self._dirty_instances: set[str] = set()
        self._dirty_entities: set[str] = set()
        self._timers: list[tuple[float, str, str]] = []
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._activities: dict[int, asyncio.Task[None]] = {}
        self._entity_tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Resume whatever the store holds: pending activities, visible messages, durable timers."""
        now = time.time()
        pending = self.store.pending_activities()
        for item in pending:
            self._spawn_activity(item)  # one still invisible goes on the timer heap
        self._dirty_instances.update(self.store.instances_with_visible_messages(now))
        self._dirty_entities.update(self.store.entities_with_visible_messages(now))
        for at, instance_id in self.store.next_invisible_times(now):
            heapq.heappush(self._timers, (at, "instance", instance_id))
        for at, entity_id in self.store.next_invisible_entity_times(now):
            heapq.heappush(self._timers, (at, "entity", entity_id))
        if pending or self._dirty_instances or self._dirty_entities or self._timers:
            logger.info(
                "Resuming durable work: %d activities, %d instances, %d entities with messages, %d timers",
                len(pending),
                len(self._dirty_instances),
                len(self._dirty_entities),
                len(self._timers),
            )
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="devhost-dispatcher")

    async def pause(self) -> None:
        """Stop dispatching: nothing new runs until `start()` resumes (activities and entity batches running go on)."""
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop dispatching; let running activities and entity batches finish for a while, then cancel them.

        Whatever is cancelled has not committed and runs again on the next start.
        """
        self._stopping = True
        self._wake.set()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
        running = [*self._activities.values(), *self._entity_tasks.values()]
        if running:
            _, still_running = await asyncio.wait(running, timeout=grace_seconds)
            for task in still_running:
                task.cancel()
            if still_running:
                await asyncio.wait(still_running, timeout=1.0)

    # ------------------------------------------------------------------ notifications

    def _notify_instance(self, instance_id: str) -> None:
        self._dirty_instances.add(instance_id)
        self._wake.set()

    def _notify_entity(self, entity_id: str) -> None:
        self._dirty_entities.add(entity_id)
        self._wake.set()

    def _schedule_wake(self, at: float, kind: str, target: str) -> None:
        """At `at`, run the instance or entity `target`, or start the activity whose id is `target`."""
        heapq.heappush(self._timers, (at, kind, target))
        self._wake.set()

    def _deliver(self, kind: str, target: str, at: float) -> None:
        """Act on one committed message for `target` that becomes visible at `at` (0.0: at once)."""
        if at:
            self._schedule_wake(at, kind, target)
        elif kind == "instance":
            self._notify_instance(target)
        else:
            self._notify_entity(target)

    def _take_due(self, now: float) -> None:
        """Pop the wake-ups that are due: mark their instances and entities, start their activities."""
        while self._timers and self._timers[0][0] <= now:
            _, kind, target = heapq.heappop(self._timers)
            if kind == "instance":
                self._dirty_instances.add(target)
            elif kind == "entity":
                self._dirty_entities.add(target)
            else:
                item = self.store.get_activity(int(target))
                if item is not None:  # None: completed, or dropped by a terminate or purge meanwhile
                    self._spawn_activity(item)

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            self._take_due(time.time())
            instances = sorted(self._dirty_instances)[:EPISODES_PER_COMMIT]
            self._dirty_instances.difference_update(instances)
            if instances and self._quiet is not None:
                await self._quiet.wait()
            await self._run_episodes(instances)
            entities, self._dirty_entities = self._dirty_entities, set()
            for entity_id in entities:
                if entity_id not in self._entity_tasks:
                    self._entity_tasks[entity_id] = asyncio.create_task(self._run_entity(entity_id))
            if self._dirty_instances or self._dirty_entities:
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            timeout = max(0.0, self._timers[0][0] - time.time()) if self._timers else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _run_episodes(self, instance_ids: list[str]) -> None:
        """Run one episode per instance, commit them together, then act on what they committed."""
        prepared: list[tuple[str, Episode]] = []
        for count, instance_id in enumerate(instance_ids):
            try:
                episode = self._prepare_episode(instance_id)
            except Exception:
                logger.exception(
                    "devhost: the episode of instance %s failed; retrying in %ss", instance_id, RETRY_DELAY
                )
                self._schedule_wake(time.time() + RETRY_DELAY, "instance", instance_id)
                continue
            if episode is not None:
                prepared.append((instance_id, episode))
            if count % 16 == 15:
                await asyncio.sleep(0)
        if not prepared:
            return
        results = await asyncio.gather(
            *(self._committer.submit(episode.write) for _, episode in prepared), return_exceptions=True
        )
        for (instance_id, episode), result in zip(prepared, results, strict=True):
            if isinstance(result, BaseException):
                logger.error(
                    "devhost: could not commit the episode of %s (retrying in %ss): %s",
                    instance_id,
                    RETRY_DELAY,
                    result,
                )
                self._schedule_wake(time.time() + RETRY_DELAY, "instance", instance_id)
                continue
            episode.after_commit()

    # ------------------------------------------------------------------ client operations

    async def start_instance(
        self, name: str, instance_id: str | None, input_token: str | None, version: str = ""
    ) -> str:
        """Create an instance and its ExecutionStarted message; returns the instance id once committed.

        An id whose instance is Pending/Running/Suspended is refused with 409 (the extension's default
        `overridableExistingInstanceStates: NonRunningStates`); a completed, failed or terminated one is replaced.
        """
        if name not in self.index.orchestrators:
            known = ", ".join(f"'{n}'" for n in sorted(self.index.orchestrators))
            raise DurableError(
                400,
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. "
                f"Additional info: the following are the active orchestrator functions: {known}.",
            )
        new_id = instance_id or uuid.uuid4().hex
        validate_instance_id(new_id)
        at = await self._committer.submit(lambda db: self._create_instance(db, new_id, name, input_token, version))
        self._deliver("instance", new_id, at)
        return new_id

    def _create_instance(self, db: Any, instance_id: str, name: str, input_token: str | None, version: str) -> float:
        """Insert the instance row and its ExecutionStarted message; returns when that message becomes visible."""
        existing = self.store.get_instance(instance_id)
        if existing is not None and existing.status in ACTIVE_STATUSES:
            raise DurableError(409, f"An Orchestration instance with the status {existing.status} already exists.")
        now = utcnow()
        execution_id = uuid.uuid4().hex
        if existing is not None:
            Store.delete_instance_data(db, instance_id)
            db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))
        db.execute(
            "INSERT INTO instances (instance_id, execution_id, name, version, status, input, output, custom_status, "
            "created_time, last_updated_time) VALUES (?, ?, ?, ?, 'Pending', ?, NULL, NULL, ?, ?)",
            (instance_id, execution_id, name, version, input_token, now.timestamp(), now.timestamp()),
        )
        started: Event = new_event(
            EventType.EXECUTION_STARTED,
            now,
            Name=name,
            Version=version,
            Input=json.loads(input_token) if input_token is not None else None,
            OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
        )
        at = self.latency.deliver_at()
        Store.enqueue(db, instance_id, execution_id, started, at)
        return at

    def _require_instance(self, instance_id: str) -> Instance:
        instance = self.store.get_instance(instance_id)
        if instance is None:
            raise DurableError(404, f"No instance with ID '{instance_id}' found.")
        return instance

    async def raise_event(self, instance_id: str, event_name: str, data_text: str) -> None:
        """Queue an EventRaised message whose Input is the request's JSON text."""
        instance = self._require_instance(instance_id)
        if instance.status in TERMINAL_STATUSES:
            raise DurableError(410, f"Instance with ID {instance_id} is gone: either completed or failed")
        event = new_event(EventType.EVENT_RAISED, utcnow(), Name=event_name, Input=data_text)
        await self._send(instance_id, instance.execution_id, event)

    async def _send(self, instance_id: str, execution_id: str, event: Event) -> None:
        """Queue a client's message for an instance; returns once committed (it is delivered after the latency)."""

        def write(db: Any) -> float:
            at = self.latency.deliver_at()
            Store.enqueue(db, instance_id, execution_id, event, at)
            return at

        self._deliver("instance", instance_id, await self._committer.submit(write))

    async def terminate(self, instance_id: str, reason: str | None) -> None:
        """Queue the termination of a running instance (410 when it has already finished)."""
        instance = self._require_instance(instance_id)
        if instance.status in TERMINAL_STATUSES:
            raise DurableError(410, f"Instance with ID {instance_id} is gone: either completed or failed")
        event = new_event(EventType.EXECUTION_TERMINATED, utcnow(), Input=reason)
        await self._send(instance_id, instance.execution_id, event)

    def purge(self, instance_id: str) -> PurgeResult:
        """Delete a finished instance and its history (404 when unknown, 412 while it runs).

        An id that starts with `@` is an entity's (`@name@key`): as the extension does, it is purged without the
        status check (an entity is always Running), and the result counts what was there (0 is not a 404).
        Operations still queued for the entity stay queued, as messages stay in Azure Storage's queues.
        """
        if instance_id.startswith("@"):
            with self.store.transaction() as db:
                deleted = db.execute("DELETE FROM entities WHERE entity_id = ?", (instance_id,)).rowcount
                if db.execute("SELECT 1 FROM instances WHERE instance_id = ?", (instance_id,)).fetchone():
                    Store.delete_instance_data(db, instance_id)
                    deleted += db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,)).rowcount
            self.store.forget_freed()
            return PurgeResult(deleted)
        instance = self.store.get_instance(instance_id)
        if instance is None:
            raise DurableError(404, f"No instance with ID '{instance_id}' found.")
        if instance.status not in TERMINAL_STATUSES:
            raise DurableError(
                412,
                f"Only orchestrations in a terminal state can be purged, but the orchestration with instance ID "
                f"{instance_id} has status {instance.status}",
            )
        with self.store.transaction() as db:
            Store.delete_instance_data(db, instance_id)
            db.execute("DELETE FROM instances WHERE instance_id = ?", (instance_id,))
        self.store.forget_freed()
        return PurgeResult(1)

    def purge_by(self, created_from: float, created_to: float, statuses: list[str] | None) -> PurgeResult:
        """Delete the finished instances created in the window (only terminal statuses are ever purged)."""
        wanted = [s for s in (statuses or TERMINAL_STATUSES) if s in TERMINAL_STATUSES]
        if not wanted:
            return PurgeResult(0)
        victims = self.store.query_instances(created_from=created_from, created_to=created_to, statuses=wanted)
        with self.store.transaction() as db:
            for instance in victims:
                Store.delete_instance_data(db, instance.instance_id)
                db.execute("DELETE FROM instances WHERE instance_id = ?", (instance.instance_id,))
        if victims:
            self.store.forget_freed()
        return PurgeResult(len(victims))

    async def signal_entity(self, entity_name: str, entity_key: str, operation: str, input_text: str | None) -> None:
        """Queue a signal; returns once it is committed."""
        if entity_name.lower() not in self.index.entities:
            raise DurableError(
                400, f"The function '{entity_name}' doesn't exist, is disabled, or is not an entity function."
            )
        entity_id = scheduler_id(entity_name, entity_key)

        def write(db: Any) -> float:
            at = self._entity_visible_at(db, entity_id, None)
            Store.enqueue_entity_message(db, entity_id, operation, input_text, is_signal=True, visible_at=at)
            return at

        self._deliver("entity", entity_id, await self._committer.submit(write))

    def _entity_visible_at(self, db: Any, entity_id: str, sender: str | None) -> float:
        """When an entity operation committed now becomes visible: after the latency, and never before an earlier one.

        Messages from one sender (an orchestration, or the clients, which count as one sender) to one entity keep
        their order, as on Azure: the operation becomes visible no sooner than the last one from the same sender to
        the same entity that is still queued.

        Args:
            db: the connection, inside the transaction that queues the operation.
            entity_id: the target's scheduler id.
            sender: the sending orchestration's instance id, None for a client.
        """
        at = self.latency.deliver_at()
        if not self.latency.enabled:
            return at
        return max(at, Store.last_entity_visible_at(db, entity_id, sender))

    def idle(self) -> bool:
        """Whether nothing is queued or running.

        No orchestration message (durable timers included), activity or entity operation is left, and nothing is
        about to be dispatched.
        """
        if self._dirty_instances or self._dirty_entities or self._activities or self._entity_tasks:
            return False
        return self.store.queued_work() == 0

    async def wait_idle(self, within: float = 60.0, interval: float = 0.002) -> None:
        """Return once the back end is `idle()`: what was started has run to its end.

        For tests and tools that drive the host step by step. Work that does not end within `within` seconds (a long
        durable timer) raises TimeoutError.
        """
        deadline = time.monotonic() + within
        while not self.idle():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the durable back end still had work after {within}s")
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ orchestration episodes

    def _prepare_episode(self, instance_id: str) -> Episode | None:
        """The instance's next episode, from its visible messages; None when they ask for nothing to be done."""
        now = utcnow()
        messages = self.store.visible_messages(instance_id, now.timestamp(), by_visibility=self.latency.enabled)
        if not messages:
            return None
        instance = self.store.get_instance(instance_id)
        current = [m for m in messages if instance and m.execution_id in (None, instance.execution_id)]
        if instance is None or instance.status in TERMINAL_STATUSES or not current:
            return _dropping(messages)  # for a finished, purged or replaced execution: nothing will consume them
        terminate = next((m for m in current if m.event["EventType"] == EventType.EXECUTION_TERMINATED), None)
        if terminate is not None:
            return self._terminate(instance, terminate.event.get("Input"), now)
        stale = [m for m in messages if m not in current]  # for an earlier execution
        history = self.store.load_history(instance_id)
        if not history and not any(m.event["EventType"] == EventType.EXECUTION_STARTED for m in current):
            return _dropping(stale)  # events that arrived before the start is processed wait for it
        return self._orchestrator_episode(instance, history, stale + current, current, now)

    def _orchestrator_episode(
        self,
        instance: Instance,
        history: list[Event],
        consumed: list[InboxMessage],
        work_messages: list[InboxMessage],
        now: datetime,
    ) -> Episode:
        """Run the orchestrator on its history plus the new messages; the episode commits what it decided.

        Args:
            instance: the instance row.
            history: the current execution's history so far.
            consumed: every message the episode deletes (the new ones and stale ones).
            work_messages: the new messages the orchestrator sees.
            now: the episode's time.
        """
        instance_id = instance.instance_id
        new_events = [m.event for m in work_messages]
        new_events.sort(key=lambda e: 0 if e["EventType"] == EventType.EXECUTION_STARTED else 1)
        started_at = next_orchestrator_time(history, now)
        episode = [new_event(EventType.ORCHESTRATOR_STARTED, started_at), *new_events]
        full_history = history + episode
        state, error, replay = self._run_orchestrator(instance, full_history)
        new_work: list[Work] = replay.new_work if replay else []
        scheduled = [self._scheduling_event(instance, work, started_at) for work in new_work]
        outcome = self._episode_outcome(instance, state, error, started_at)
        appended = [*episode, *scheduled, new_event(EventType.ORCHESTRATOR_COMPLETED, started_at)]
        if outcome.done_event is not None:
            appended.append(outcome.done_event)
        followups = Followups()

        def write(db: Any) -> None:
            db.executemany("DELETE FROM inbox WHERE id = ?", [(m.id,) for m in consumed])
            Store.append_history(db, instance_id, len(history), appended)
            for work in new_work:
                self._persist_work(db, instance, work, followups)
            db.execute(
                "UPDATE instances SET status = ?, output = ?, custom_status = ?, last_updated_time = ? "
                "WHERE instance_id = ?",
                (outcome.status, outcome.output, outcome.custom_status, time.time(), instance_id),
            )

        return Episode(write, partial(self._after_commit, followups))

    def _run_orchestrator(
        self, instance: Instance, full_history: list[Event]
    ) -> tuple[dict[str, Any] | None, str | None, ReplayResult | None]:
        """Invoke the orchestrator and replay its actions: (its state, an error message or None, the replay)."""
        state, error = self._invoke_orchestrator(instance, full_history)
        actions: list[dict[str, Any]] = []
        if state and isinstance(state.get("actions"), list) and state["actions"]:
            actions = state["actions"][0] or []
        replay: ReplayResult | None = None
        try:
            replay = Replayer(instance.instance_id, instance.execution_id, actions).run(full_history)
        except (NonDeterminismError, NotEmulatedError) as mismatch:
            error = str(mismatch)
            logger.error("Orchestration %s (%s) failed: %s", instance.name, instance.instance_id, error)
        return state, error, replay

    @staticmethod
    def _episode_outcome(
        instance: Instance, state: dict[str, Any] | None, error: str | None, started_at: datetime
    ) -> Outcome:
        """The status, output and custom status the episode leaves, and its ExecutionCompleted event if it ends."""
        custom_status = instance.custom_status
        if state is not None and state.get("customStatus") is not None:
            custom_status = json.dumps(state["customStatus"])
        outcome = Outcome("Running", instance.output, custom_status, error)
        if error is not None:
            message = f"Orchestrator function '{instance.name}' failed: {error}"
            outcome.status = "Failed"
            outcome.output = json.dumps(message)
            outcome.done_event = new_event(
                EventType.EXECUTION_COMPLETED, started_at, OrchestrationStatus="Failed", Result=message
            )
        elif state is not None and state.get("isDone"):
            outcome.status = "Completed"
            outcome.output = json.dumps(state.get("output"))
            outcome.done_event = new_event(
                EventType.EXECUTION_COMPLETED, started_at, OrchestrationStatus="Completed", Result=outcome.output
            )
        return outcome

    def _invoke_orchestrator(
        self, instance: Instance, history: list[Event]
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Call the SDK's handle with the context JSON; returns (orchestrator state, error message or None)."""
        function = self.index.orchestrators.get(instance.name)
        if function is None:
            return None, f"The orchestrator function '{instance.name}' does not exist in this app"
        context = {
            "history": with_played_flags(history),
            "input": json.loads(instance.input) if instance.input is not None else None,
            "instanceId": instance.instance_id,
            "isReplaying": False,
            "parentInstanceId": None,
            "upperSchemaVersion": 1,
            "upperSchemaVersionNew": 2,
        }
        body = json.dumps(context)
        with invocation(function.function_name, "(null)") as outcome:
            try:
                result = function.handle(**{function.trigger_name: body})
            except Exception as exc:
                outcome.failed = True
                text = str(exc)
                if OUT_OF_PROC_LABEL in text:
                    message, _, payload = text.partition(OUT_OF_PROC_LABEL)
                    try:
                        state = json.loads(payload)
                    except ValueError:
                        state = None
                    error = (state or {}).get("error") or message.strip()
                    logger.error("Orchestrator %s (%s) failed: %s", instance.name, instance.instance_id, error)
                    return state, str(error)
                logger.exception("Orchestrator %s (%s) raised outside the SDK", instance.name, instance.instance_id)
                return None, f"{type(exc).__name__}: {exc}"
        try:
            state = json.loads(result)
        except (TypeError, ValueError):
            return None, f"The orchestrator returned an invalid state: {result!r}"
        return state, None

    @staticmethod
    def _scheduling_event(instance: Instance, work: Work, at: datetime) -> Event:
        if work.kind == "activity":
            return new_event(EventType.TASK_SCHEDULED, at, work.event_id, Name=work.name, Version="", Input=work.input)
        if work.kind == "timer":
            assert work.fire_at is not None
            return new_event(EventType.TIMER_CREATED, at, work.event_id, FireAt=format_sdk_time(work.fire_at))
        request = {
            "op": work.operation,
            "signal": work.signal,
            "input": queued_entity_input(work.input),
            "id": work.request_id,
            "parent": instance.instance_id,
            "parentExecution": instance.execution_id,
        }
        return new_event(
            EventType.EVENT_SENT, at, work.event_id, InstanceId=work.name, Name="op", Input=json.dumps(request)
        )

    def _persist_work(self, db: Any, instance: Instance, work: Work, followups: Followups) -> None:
        """Inside the episode's transaction: queue one piece of new work (its message or work item)."""
        if work.kind == "activity":
            visible_at = self.latency.deliver_at()
            cursor = db.execute(
                "INSERT INTO activities (instance_id, execution_id, task_id, name, input, visible_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (instance.instance_id, instance.execution_id, work.event_id, work.name, work.input, visible_at),
            )
            followups.activities.append(
                ActivityItem(
                    int(cursor.lastrowid or 0),
                    instance.instance_id,
                    instance.execution_id,
                    work.event_id,
                    work.name,
                    work.input,
                    visible_at,
                )
            )
        elif work.kind == "timer":
            assert work.fire_at is not None
            fired = new_event(
                EventType.TIMER_FIRED, work.fire_at, TimerId=work.event_id, FireAt=format_sdk_time(work.fire_at)
            )
            at = self.latency.deliver_at(work.fire_at.timestamp())
            Store.enqueue(db, instance.instance_id, instance.execution_id, fired, at)
            followups.deliver("instance", instance.instance_id, at)
        elif work.kind == "entity":
            self._persist_entity_message(db, instance, work, followups)

    def _persist_entity_message(self, db: Any, instance: Instance, work: Work, followups: Followups) -> None:
        """Queue an orchestration's call or signal."""
        at = self._entity_visible_at(db, work.name, instance.instance_id)
        Store.enqueue_entity_message(
            db,
            work.name,
            work.operation or "",
            queued_entity_input(work.input),
            is_signal=work.signal,
            request_id=None if work.signal else work.request_id,
            parent_instance_id=instance.instance_id,
            parent_execution_id=instance.execution_id,
            visible_at=at,
        )
        followups.deliver("entity", work.name, at)

    def _terminate(self, instance: Instance, reason: str | None, now: datetime) -> Episode:
        history = self.store.load_history(instance.instance_id)
        event = new_event(EventType.EXECUTION_TERMINATED, now, Input=reason)

        def write(db: Any) -> None:
            db.execute("DELETE FROM inbox WHERE instance_id = ?", (instance.instance_id,))
            db.execute("DELETE FROM activities WHERE instance_id = ?", (instance.instance_id,))
            Store.append_history(db, instance.instance_id, len(history), [event])
            db.execute(
                "UPDATE instances SET status = 'Terminated', output = ?, last_updated_time = ? WHERE instance_id = ?",
                (json.dumps(reason), now.timestamp(), instance.instance_id),
            )

        def after_commit() -> None:
            logger.info("Orchestration %s (%s) terminated: %s", instance.name, instance.instance_id, reason)

        return Episode(write, after_commit)

    def _after_commit(self, followups: Followups) -> None:
        for item in followups.activities:
            self._spawn_activity(item)
        for at, kind, target in followups.wake:
            self._schedule_wake(at, kind, target)
        for instance_id in followups.instances:
            self._notify_instance(instance_id)
        for entity_id in followups.entities:
            self._notify_entity(entity_id)

    # ------------------------------------------------------------------ activities

    def _spawn_activity(self, item: ActivityItem) -> None:
        """Run an activity now, or put it on the timer heap while its work item is not visible yet."""
        if item.id in self._activities or self._stopping:
            return
        if item.visible_at > time.time():
            self._schedule_wake(item.visible_at, "activity", str(item.id))
            return
        task = asyncio.create_task(self._run_activity(item), name=f"activity-{item.name}-{item.id}")
        self._activities[item.id] = task
        key = item.id
        task.add_done_callback(lambda _t: self._activities.pop(key, None))

    async def _run_activity(self, item: ActivityItem) -> None:
        result_event: Event
        if self._quiet is not None:
            await self._quiet.wait()
        try:
            result_text = await self._call_activity(item)
            result_event = new_event(
                EventType.TASK_COMPLETED, utcnow(), TaskScheduledId=item.task_id, Result=result_text
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            result_event = new_event(
                EventType.TASK_FAILED,
                utcnow(),
                TaskScheduledId=item.task_id,
                Reason=f"Activity function '{item.name}' failed: {type(exc).__name__}: {exc}",
                Details="".join(traceback.format_exception(exc)),
            )

        def write(db: Any) -> float | None:
            if not db.execute("DELETE FROM activities WHERE id = ?", (item.id,)).rowcount:
                return None  # the instance was terminated, purged or replaced meanwhile
            at = self.latency.deliver_at()
            Store.enqueue(db, item.instance_id, item.execution_id, result_event, at)
            return at

        at = await self._committer.submit(write)
        if at is not None:
            self._deliver("instance", item.instance_id, at)

    async def _call_activity(self, item: ActivityItem) -> str:
        function = self.index.activities.get(item.name)
        if function is None:
            raise LookupError(f"The activity function '{item.name}' does not exist in this app")
        value = ActivityTriggerConverter.decode(meta.Datum(item.input or "null", "string"), trigger_metadata=None)
        kwargs: dict[str, Any] = {function.input_name: value}
        with invocation(function.function_name, "(null)") as outcome:
            if "context" in function.parameters and function.input_name != "context":
                kwargs["context"] = InvocationContext(
                    outcome.invocation_id, function.function_name, self._function_directory
                )
            if function.is_async:
                returned = await function.fn(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                returned = await loop.run_in_executor(self._executor, partial(function.fn, **kwargs))
        datum = ActivityTriggerConverter.encode(returned, expected_type=None)
        return str(datum.value)

    # ------------------------------------------------------------------ entities

    async def _run_entity(self, entity_id: str) -> None:
        try:
            while not self._stopping:
                batch = self.store.entity_batch(
                    entity_id, time.time(), ENTITY_BATCH_SIZE, by_visibility=self.latency.enabled
                )
                if not batch:
                    break
                await self._run_entity_batch(entity_id, batch)
        except Exception:
            logger.exception("devhost: the batch of entity %s failed; retrying in %ss", entity_id, RETRY_DELAY)
            self._schedule_wake(time.time() + RETRY_DELAY, "entity", entity_id)
        finally:
            self._entity_tasks.pop(entity_id, None)

    async def _run_entity_batch(self, entity_id: str, batch: list[Any]) -> None:
        name, key = split_scheduler_id(entity_id)
        function = self.index.entities.get(name)
        state = self.store.get_entity_state(entity_id)
        exists, new_state = state is not None, state
        results: list[dict[str, Any]]
        if function is None:
            error = json.dumps(f"The entity function '{name}' does not exist in this app")
            results = [{"isError": True, "result": error} for _ in batch]
        else:
            body = entity_batch_request(entity_id, state, batch)
            loop = asyncio.get_running_loop()
            with invocation(function.function_name, "(null)") as outcome:
                try:
                    returned = await loop.run_in_executor(
                        self._executor, partial(function.handle, **{function.trigger_name: body})
                    )
                    answer = read_entity_batch_response(returned)
                    exists, new_state, results = answer.exists, answer.state, answer.results
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    outcome.failed = True
                    logger.exception("Entity %s: the batch raised", entity_id)
                    results = [{"isError": True, "result": json.dumps(f"{type(exc).__name__}: {exc}")} for _ in batch]
        while len(results) < len(batch):
            results.append({"isError": True, "result": json.dumps("The entity returned no result")})
        followups = Followups()

        def write(db: Any) -> None:
            db.executemany("DELETE FROM entity_messages WHERE id = ?", [(m.id,) for m in batch])
            if exists:
                db.execute(
                    "INSERT INTO entities (entity_id, name, key, state, last_modified) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (entity_id) DO UPDATE SET state = excluded.state, "
                    "last_modified = excluded.last_modified",
                    (entity_id, name, key, new_state if new_state is not None else "null", time.time()),
                )
            else:
                db.execute("DELETE FROM entities WHERE entity_id = ?", (entity_id,))
            for message, result in zip(batch, results, strict=False):
                if message.is_signal or not message.parent_instance_id or not message.request_id:
                    continue
                payload: dict[str, Any] = {"result": result.get("result")}
                if result.get("isError"):
                    payload["exceptionType"] = "Error"
                event = new_event(EventType.EVENT_RAISED, utcnow(), Name=message.request_id, Input=json.dumps(payload))
                at = self.latency.deliver_at()
                Store.enqueue(db, message.parent_instance_id, message.parent_execution_id, event, at)
                followups.deliver("instance", message.parent_instance_id, at)

        await self._committer.submit(write)
        if not exists:
            self.store.forget_freed()  # the entity's earlier states are in older pages of the WAL
        self._after_commit(followups)
