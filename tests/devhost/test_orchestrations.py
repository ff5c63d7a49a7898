"""Orchestrations through the real DurableOrchestrationClient: activities, retries, timers, events, entities, and the
features devhost does not emulate failing the instance with a message that names them."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import azure.durable_functions as df
import pytest

from tests.devhost.conftest import wait_for


async def test_full_tour_completes_with_every_emulated_durable_feature(
    client: df.DurableOrchestrationClient, tmp_path: Path
):
    attempts = tmp_path / "attempts"
    instance_id = await client.start_new("full_tour", None, {"attempts_file": str(attempts), "counter": "tour"})
    status = await wait_for(client, instance_id, {"Running"})
    await wait_for_event_wait(client, instance_id)
    await client.raise_event(instance_id, "approve", {"by": "me"})
    status = await wait_for(client, instance_id)
    assert status.runtime_status.value == "Completed", status.output
    assert status.output == {
        "first": "Hello tour",
        "flaky": 2,
        "approval": '{"by": "me"}',
        "fan": ["Hello 0", "Hello 1", "Hello 2", "Hello 3"],
        "after_add": 6,
        "got": 6,
    }
    assert status.custom_status == {"stage": "done"}
    assert attempts.read_text() == "2"


async def wait_for_event_wait(client: df.DurableOrchestrationClient, instance_id: str) -> None:
    import asyncio

    for _ in range(200):
        status = await client.get_status(instance_id, show_history=True)
        names = [e.get("EventType") for e in status.historyEvents or []]
        if names.count("TimerFired") >= 2:
            return
        await asyncio.sleep(0.05)


async def test_retry_honours_attempts_and_interval_then_fails(client: df.DurableOrchestrationClient):
    instance_id = await client.start_new("retry_exhausted", None, None)
    status = await wait_for(client, instance_id)
    assert status.runtime_status.value == "Completed"
    assert "always fails" in status.output["caught"]
    history = status.historyEvents
    kinds = [e["EventType"] for e in history]
    # attempt, retry timer, attempt, and the extra timer DTFx waits after the last attempt
    assert kinds == [
        "ExecutionStarted",
        "TaskFailed",
        "TimerCreated",
        "TimerFired",
        "TaskFailed",
        "TimerCreated",
        "TimerFired",
        "ExecutionCompleted",
    ]
    first_failed = datetime.fromisoformat(history[1]["Timestamp"].replace("Z", "+00:00"))
    retried = datetime.fromisoformat(history[4]["ScheduledTime"].replace("Z", "+00:00"))
    assert retried - first_failed >= timedelta(milliseconds=50)  # firstRetryIntervalInMilliseconds
    assert [e.get("TimerId") for e in history if e["EventType"] == "TimerFired"] == [1, 3]


async def test_sequence_ids_follow_the_extension(host, client: df.DurableOrchestrationClient, tmp_path: Path):
    """Signal takes an id, WaitForExternalEvent takes none, retries take ids as they happen."""
    attempts = tmp_path / "attempts"
    instance_id = await client.start_new("full_tour", None, {"attempts_file": str(attempts), "counter": "ids"})
    await wait_for_event_wait(client, instance_id)
    await client.raise_event(instance_id, "approve", 1)
    await wait_for(client, instance_id)
    scheduled = [
        (e["EventType"], e["EventId"], e.get("InstanceId") if e["EventType"] == 14 else e.get("Name"))
        for e in host._store.load_history(instance_id)  # the raw history is what is under test
        if e["EventType"] in (4, 7, 10, 14)
    ]
    assert scheduled == [
        (4, 0, "hello"),
        (4, 1, "flaky"),  # attempt 1 fails
        (10, 2, None),  # retry timer
        (4, 3, "flaky"),  # attempt 2
        (10, 4, None),  # create_timer (the external event after it takes no id)
        (4, 5, "hello"),
        (4, 6, "hello"),
        (4, 7, "hello"),
        (4, 8, "hello"),
        (14, 9, "@counter@ids"),  # signal_entity
        (14, 10, "@counter@ids"),  # call_entity add
        (14, 11, "@counter@ids"),  # call_entity get
    ]


async def test_orchestrator_exception_fails_the_instance_with_its_message(client: df.DurableOrchestrationClient):
    instance_id = await client.start_new("failing", None, None)
    status = await wait_for(client, instance_id)
    assert status.runtime_status.value == "Failed"
    assert status.output == "Orchestrator function 'failing' failed: boom requested"


async def test_non_deterministic_replay_fails_with_a_clear_error(client: df.DurableOrchestrationClient):
    instance_id = await client.start_new("nondeterministic", None, None)
    status = await wait_for(client, instance_id)
    assert status.runtime_status.value == "Failed"
    assert "Non-deterministic workflow detected" in status.output
    assert "'hello'" in status.output and "'double'" in status.output


async def test_entity_error_surfaces_in_the_calling_orchestration(client: df.DurableOrchestrationClient):
    instance_id = await client.start_new("call_bad_operation", None, "bad")
    status = await wait_for(client, instance_id)
    assert status.output == {"error": "unknown operation explode"}


@pytest.mark.parametrize(
    ("feature", "named"),
    [
        ("sub_orchestrator", "sub-orchestrations"),
        ("task_any", "task_any"),
        ("continue_as_new", "continue_as_new"),
    ],
)
async def test_a_feature_devhost_does_not_emulate_fails_the_instance_naming_it(
    client: df.DurableOrchestrationClient, feature: str, named: str
):
    instance_id = await client.start_new("not_emulated", None, feature)
    status = await wait_for(client, instance_id)
    assert status.runtime_status.value == "Failed"
    assert f"devhost does not emulate {named}" in status.output
