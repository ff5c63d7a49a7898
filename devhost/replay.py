"""What the Durable extension does with an orchestrator's `actions`: assign sequence ids, match them to history.

The SDK returns the cumulative list of every action its generator scheduled. The extension (OutOfProcOrchestrationShim,
schema V2) replays that list against the DTFx context: it walks the actions in order and *awaits each one*, while DTFx
feeds it the history events in order. Every scheduling API takes the next sequence id when it is called
(WaitForExternalEvent takes none); a retried call is a loop of attempt, timer, attempt... whose later ids are taken
when the failure is replayed. `Replayer` reproduces that walk with small callback-based tasks, so that:

* every scheduling event in the history (TaskScheduled, TimerCreated, EventSent) is checked against the action that
  now takes its id, by type and name: a difference is a non-determinism error;
* the actions that have no scheduling event yet are the new work of this episode, in id order.

Only the actions this app and devhost's tests need are emulated: activities (with retries), durable timers, external
events, entity calls and signals, and WhenAll (the SDK wraps every `call_activity_with_retry` in one, so `task_all`
works too). Sub-orchestrations, continue-as-new, `task_any`, `call_http` and cancelled timers raise
`NotEmulatedError`, which fails the orchestration with a message naming the feature.
"""

from __future__ import annotations

import json
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from devhost.history import Event, EventType, parse_time

# actionType values of the out-of-proc protocol that devhost emulates
CALL_ACTIVITY = 0
CALL_ACTIVITY_WITH_RETRY = 1
CREATE_TIMER = 5
WAIT_FOR_EXTERNAL_EVENT = 6
CALL_ENTITY = 7
SIGNAL_ENTITY = 9
WHEN_ALL = 12  # also what the SDK sends for call_activity_with_retry: WhenAll([CallActivityWithRetry])

# the others, by the SDK feature that produces them
NOT_EMULATED = {
    2: "sub-orchestrations (call_sub_orchestrator)",
    3: "sub-orchestrations (call_sub_orchestrator_with_retry)",
    4: "continue_as_new",
    8: "call_http",
    10: "scheduled entity signals",
    11: "task_any",
}


class NonDeterminismError(Exception):
    """The orchestrator's replay does not match the history it produced before."""


class NotEmulatedError(Exception):
    """The orchestrator used a Durable feature devhost does not emulate (see the module docstring)."""


@dataclass
class Work:
    """One scheduled task: an activity, a timer or an entity message.

    `kind` is one of "activity", "timer", "entity". For entities, `name` is the scheduler id (`@name@key`) and
    `operation`/`signal`/`request_id` describe the message. `input` is the action's JSON text.
    """

    kind: str
    event_id: int
    name: str
    input: str | None = None
    fire_at: datetime | None = None
    operation: str | None = None
    signal: bool = False
    request_id: str | None = None


class _Task:
    """A minimal awaitable: completes once, then runs its continuations in registration order."""

    def __init__(self) -> None:
        self.done = False
        self.failed = False
        self._continuations: list[Callable[[_Task], None]] = []

    def complete(self, failed: bool = False) -> None:
        if self.done:
            return
        self.done = True
        self.failed = failed
        continuations, self._continuations = self._continuations, []
        for continuation in continuations:
            continuation(self)

    def then(self, continuation: Callable[[_Task], None]) -> None:
        if self.done:
            continuation(self)
        else:
            self._continuations.append(continuation)


class _ScheduledTask(_Task):
    def __init__(self, work: Work) -> None:
        super().__init__()
        self.work = work


def _when_all(children: list[_Task]) -> _Task:
    task = _Task()
    remaining = [len(children)]
    if not children:
        task.complete()

    def on_child(child: _Task) -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            task.complete(failed=any(c.failed for c in children))

    for child in children:
        child.then(on_child)
    return task


@dataclass
class ReplayResult:
    """What the walk found: the work that has no scheduling event yet."""

    new_work: list[Work] = field(default_factory=list)


class Replayer:
    """Replays one orchestrator's actions against its history, as the extension's shim and DTFx do."""

    def __init__(self, instance_id: str, execution_id: str, actions: list[dict[str, Any]]) -> None:
        self._instance_id = instance_id
        self._execution_id = execution_id
        self._actions = actions
        self._next_id = 0
        self._now: datetime | None = None
        self._unmatched: dict[int, _ScheduledTask] = {}
        self._by_id: dict[int, _ScheduledTask] = {}
        self._entity_requests: dict[str, _ScheduledTask] = {}
        self._event_waiters: dict[str, deque[_Task]] = {}
        self._buffered_events: dict[str, deque[Event]] = {}
        self._result = ReplayResult()

    # ------------------------------------------------------------------ the walk

    def run(self, history: list[Event]) -> ReplayResult:
        """Walk the history and return the new work.

        Raises `NonDeterminismError` on a mismatch, `NotEmulatedError` on an action devhost does not emulate.
        """
        for event in history:
            event_type = event["EventType"]
            if event_type == EventType.ORCHESTRATOR_STARTED:
                self._now = parse_time(event["Timestamp"])
            elif event_type == EventType.EXECUTION_STARTED:
                self._now = self._now or parse_time(event["Timestamp"])
                self._walk_actions()
            elif event_type in _SCHEDULING_EVENTS:
                self._match(event)
            elif event_type in (EventType.TASK_COMPLETED, EventType.TASK_FAILED):
                self._resolve(event.get("TaskScheduledId"), event_type == EventType.TASK_FAILED)
            elif event_type == EventType.TIMER_FIRED:
                self._resolve(event.get("TimerId"), False)
            elif event_type == EventType.EVENT_RAISED:
                self._raise(event)
        self._result.new_work = [task.work for _, task in sorted(self._unmatched.items())]
        return self._result

    def _walk_actions(self) -> None:
        position = [0]

        def step(_previous: _Task | None = None) -> None:
            while position[0] < len(self._actions):
                action = self._actions[position[0]]
                position[0] += 1
                task = self._invoke(action)
                if not task.done:
                    task.then(step)
                    return

        step()

    # ------------------------------------------------------------------ actions -> tasks

    def _invoke(self, action: dict[str, Any]) -> _Task:
        action_type = action.get("actionType")
        if action_type == CALL_ACTIVITY:
            return self._schedule(Work("activity", -1, action["functionName"], action.get("input")))
        if action_type == CALL_ACTIVITY_WITH_RETRY:
            return self._with_retry(
                lambda: self._schedule(Work("activity", -1, action["functionName"], action.get("input"))),
                action.get("retryOptions") or {},
            )
        if action_type == CREATE_TIMER:
            if action.get("isCanceled"):
                raise NotEmulatedError("devhost does not emulate cancelled durable timers")
            return self._schedule(Work("timer", -1, "", fire_at=parse_time(action["fireAt"])))
        if action_type == WAIT_FOR_EXTERNAL_EVENT:
            return self._wait_for_event(action["externalEventName"])
        if action_type in (CALL_ENTITY, SIGNAL_ENTITY):
            signal = action_type == SIGNAL_ENTITY
            work = Work(
                "entity",
                -1,
                action["instanceId"],
                action.get("input"),
                operation=action.get("operation"),
                signal=signal,
                request_id=str(uuid.uuid4()),
            )
            task = self._schedule(work)
            return _completed() if signal else task
        if action_type == WHEN_ALL:
            return _when_all([self._invoke(child) for child in action.get("compoundActions") or []])
        if action_type in NOT_EMULATED:
            raise NotEmulatedError(f"devhost does not emulate {NOT_EMULATED[action_type]}")
        raise NonDeterminismError(f"Unknown action type {action_type!r} in the orchestrator's actions: {action!r}")

    def _schedule(self, work: Work) -> _ScheduledTask:
        work.event_id = self._next_id
        self._next_id += 1
        task = _ScheduledTask(work)
        self._unmatched[work.event_id] = task
        self._by_id[work.event_id] = task
        if work.kind == "entity" and not work.signal and work.request_id:
            self._entity_requests[work.request_id] = task
        return task

    def _with_retry(self, attempt: Callable[[], _Task], options: dict[str, Any]) -> _Task:
        """DTFx RetryInterceptor: attempt; on failure wait (a durable timer) and try again, up to the maximum.

        After the last failed attempt DTFx still waits one more interval before it gives up (the SDK's
        RetryAbleTask expects that extra timer too).
        """
        outer = _Task()
        first_interval_ms = float(options.get("firstRetryIntervalInMilliseconds") or 0)
        max_attempts = int(options.get("maxNumberOfAttempts") or 1)
        backoff = float(options.get("backoffCoefficient") or 1.0)
        max_interval_ms = options.get("maxRetryIntervalInMilliseconds")
        timeout_ms = options.get("retryTimeoutInMilliseconds")
        first_attempt_at = self._now
        attempts = [0]

        def next_delay(retry_count: int) -> timedelta:
            if timeout_ms is not None and first_attempt_at is not None and self._now is not None:
                if self._now >= first_attempt_at + timedelta(milliseconds=float(timeout_ms)):
                    return timedelta(0)
            delay_ms = first_interval_ms * backoff**retry_count
            if max_interval_ms is not None:
                delay_ms = min(delay_ms, float(max_interval_ms))
            return timedelta(milliseconds=delay_ms)

        def start() -> None:
            attempt().then(after_attempt)

        def after_attempt(child: _Task) -> None:
            if not child.failed:
                outer.complete()
                return
            attempts[0] += 1
            delay = next_delay(attempts[0] - 1)
            if delay <= timedelta(0) or self._now is None:
                outer.complete(failed=True)
                return
            self._schedule(Work("timer", -1, "", fire_at=self._now + delay)).then(after_timer)

        def after_timer(_timer: _Task) -> None:
            if attempts[0] >= max_attempts:
                outer.complete(failed=True)
            else:
                start()

        start()
        return outer

    def _wait_for_event(self, name: str) -> _Task:
        task = _Task()
        buffered = self._buffered_events.get(name)
        if buffered:
            buffered.popleft()
            task.complete()
        else:
            self._event_waiters.setdefault(name, deque()).append(task)
        return task

    # ------------------------------------------------------------------ history -> tasks

    def _match(self, event: Event) -> None:
        event_id = event.get("EventId")
        task = self._unmatched.pop(event_id, None) if isinstance(event_id, int) else None
        expected = _describe_event(event)
        if task is None:
            raise NonDeterminismError(
                f"Non-deterministic workflow detected: a previous execution of this orchestration scheduled "
                f"{expected} with sequence ID {event_id}, but the current replay execution hasn't (yet?) scheduled "
                f"this task. Was a change made to the orchestrator code after this instance had already started "
                f"running?"
            )
        work = task.work
        if not _same_work(work, event):
            raise NonDeterminismError(
                f"Non-deterministic workflow detected: a previous execution of this orchestration scheduled "
                f"{expected} with sequence ID {event_id}, but the current replay execution scheduled "
                f"{_describe_work(work)} with that ID instead. Was a change made to the orchestrator code after "
                f"this instance had already started running?"
            )
        if work.kind == "entity":
            # The request id was chosen when the message was first sent: adopt the recorded one.
            try:
                recorded_id = json.loads(event.get("Input") or "{}").get("id")
            except (TypeError, ValueError):
                recorded_id = None
            if recorded_id:
                if work.request_id in self._entity_requests:
                    self._entity_requests[recorded_id] = self._entity_requests.pop(work.request_id)
                work.request_id = recorded_id

    def _resolve(self, event_id: Any, failed: bool) -> None:
        task = self._by_id.get(event_id) if isinstance(event_id, int) else None
        if task is not None and event_id not in self._unmatched:
            task.complete(failed)

    def _raise(self, event: Event) -> None:
        name = event.get("Name") or ""
        request = self._entity_requests.get(name)
        if request is not None:
            failed = False
            try:
                failed = "exceptionType" in json.loads(event.get("Input") or "{}")
            except (TypeError, ValueError):
                pass
            request.complete(failed)
            return
        waiters = self._event_waiters.get(name)
        if waiters:
            waiters.popleft().complete()
        else:
            self._buffered_events.setdefault(name, deque()).append(event)


_SCHEDULING_EVENTS = {EventType.TASK_SCHEDULED, EventType.TIMER_CREATED, EventType.EVENT_SENT}

_KIND_OF_EVENT = {
    EventType.TASK_SCHEDULED: "activity",
    EventType.TIMER_CREATED: "timer",
    EventType.EVENT_SENT: "entity",
}


def _completed() -> _Task:
    task = _Task()
    task.complete()
    return task


def _same_work(work: Work, event: Event) -> bool:
    if _KIND_OF_EVENT.get(event["EventType"]) != work.kind:
        return False
    if work.kind == "activity":
        return bool(event.get("Name") == work.name)
    if work.kind == "entity":
        try:
            operation = json.loads(event.get("Input") or "{}").get("op")
        except (TypeError, ValueError):
            operation = None
        return bool(event.get("InstanceId") == work.name and operation == work.operation)
    return True


def _describe_event(event: Event) -> str:
    kind = _KIND_OF_EVENT.get(event["EventType"], "an event")
    if kind == "activity":
        return f"an activity task named '{event.get('Name')}'"
    if kind == "entity":
        try:
            operation = json.loads(event.get("Input") or "{}").get("op")
        except (TypeError, ValueError):
            operation = None
        return f"an entity operation '{operation}' on '{event.get('InstanceId')}'"
    return "a durable timer"


def _describe_work(work: Work) -> str:
    if work.kind == "activity":
        return f"an activity task named '{work.name}'"
    if work.kind == "entity":
        return f"an entity operation '{work.operation}' on '{work.name}'"
    return "a durable timer"
