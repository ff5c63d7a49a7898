"""History events in the shape the Durable extension sends them to the Python SDK, and the time formats they use.

Every event is a plain dict with the extension's PascalCase fields (`EventType`, `EventId`, `IsPlayed`, `Timestamp`,
then type-specific fields). `IsPlayed` is not stored: it is computed for each episode (see `with_played_flags`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import IntEnum
from typing import Any

Event = dict[str, Any]

# The SDK formats and parses this exact layout (azure.durable_functions.constants.DATETIME_STRING_FORMAT).
SDK_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


class EventType(IntEnum):
    """DTFx `EventType` numbers, as the SDK's `HistoryEventType` enum has them."""

    EXECUTION_STARTED = 0
    EXECUTION_COMPLETED = 1
    EXECUTION_FAILED = 2
    EXECUTION_TERMINATED = 3
    TASK_SCHEDULED = 4
    TASK_COMPLETED = 5
    TASK_FAILED = 6
    SUB_ORCHESTRATION_INSTANCE_CREATED = 7
    SUB_ORCHESTRATION_INSTANCE_COMPLETED = 8
    SUB_ORCHESTRATION_INSTANCE_FAILED = 9
    TIMER_CREATED = 10
    TIMER_FIRED = 11
    ORCHESTRATOR_STARTED = 12
    ORCHESTRATOR_COMPLETED = 13
    EVENT_SENT = 14
    EVENT_RAISED = 15
    CONTINUE_AS_NEW = 16
    GENERIC_EVENT = 17
    HISTORY_STATE = 18
    EXECUTION_SUSPENDED = 19
    EXECUTION_RESUMED = 20


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def format_sdk_time(value: datetime) -> str:
    """`2025-01-01T12:00:00.000000Z`: the layout of every history timestamp and `fireAt`."""
    return value.astimezone(UTC).strftime(SDK_DATETIME_FORMAT)


def parse_time(text: str) -> datetime:
    """Parse an ISO timestamp (with `Z`, an offset, or naive meaning UTC) into an aware UTC datetime."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00")) if text.endswith("Z") else datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_status_time(value: datetime) -> str:
    """The status API's `createdTime`/`lastUpdatedTime` layout: .NET "s" format plus `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_event(event_type: EventType, timestamp: datetime, event_id: int = -1, **fields: Any) -> Event:
    """Build one history event; `IsPlayed` is added when the history is sent (see `with_played_flags`)."""
    event: Event = {"EventType": int(event_type), "EventId": event_id, "Timestamp": format_sdk_time(timestamp)}
    event.update(fields)
    return event


def next_orchestrator_time(history: list[Event], now: datetime) -> datetime:
    """The timestamp of a new `OrchestratorStarted` event: now, but strictly after the previous one.

    The SDK uses it as `current_utc_datetime` and derives `new_uuid()` from it, so it must never go backwards.
    """
    for event in reversed(history):
        if event["EventType"] == EventType.ORCHESTRATOR_STARTED:
            previous = parse_time(event["Timestamp"])
            if now <= previous:
                return previous + timedelta(microseconds=1)
            break
    return now


def with_played_flags(history: list[Event]) -> list[Event]:
    """Copy the history with `IsPlayed`: true before the last `OrchestratorStarted`, false from it on."""
    last_started = -1
    for index, event in enumerate(history):
        if event["EventType"] == EventType.ORCHESTRATOR_STARTED:
            last_started = index
    played: list[Event] = []
    for index, event in enumerate(history):
        copy = {"EventType": event["EventType"], "EventId": event["EventId"], "IsPlayed": index < last_started}
        copy.update(event)
        copy["IsPlayed"] = index < last_started
        played.append(copy)
    return played
