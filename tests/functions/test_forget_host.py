"""``DurableSessionHost.forget`` over a running local task hub: what it finds, stops, deletes and purges, and what it
reports as pending; the cleanup timer carrying on a pending forget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import pytest
from azure.functions.timer import TimerRequest

from memory_core import session as rules
from memory_core import use_cases
from memory_core.service import MemoryService
from orchestrations import host as host_module
from orchestrations import names
from orchestrations.host import DurableSessionHost
from tests.functions.taskhub import TaskHub

pytestmark = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")

USER = "alice"


def entity_id(session_id: str, user_id: str = USER) -> str:
    return f"@session@{names.session_key(user_id, session_id)}"


async def hot(hub: TaskHub, session_id: str, user_id: str = USER) -> None:
    """A session entity with state, as a batch's sync leaves it (whatever the store says)."""
    record = rules.new_record(user_id, session_id, datetime.now(UTC))
    snapshot = rules.SessionSnapshot.of(record, []).model_dump(mode="json")
    entity = df.EntityId(names.SESSION_ENTITY, names.session_key(user_id, session_id))
    await hub.client.signal_entity(entity, names.SYNC, snapshot)
    await hub.settle()
    assert await hub.entity_state(names.SESSION_ENTITY, names.session_key(user_id, session_id)) is not None


def instance(hub: TaskHub, instance_id: str, status: str, age: timedelta = timedelta(hours=1)) -> None:
    hub.put_instance(instance_id, "process_turns", status, datetime.now(UTC) - age, {})


async def test_hot_sessions_are_found_by_prefix_even_when_the_store_lists_none(running_hub: TaskHub) -> None:
    hub = running_hub
    await hot(hub, "s1")
    await hot(hub, "s2")
    await hot(hub, "b1", user_id="bob")
    instance(hub, names.batch_instance_id(USER, "s1", 15), "Completed")
    instance(hub, names.batch_instance_id("bob", "b1", 15), "Completed")
    progress = await DurableSessionHost(hub.client).forget(USER, [], wait_seconds=1)
    assert progress.complete
    assert (progress.instances_purged, progress.entities_deleted) == (1, 2)
    assert await hub.entities() == {entity_id("b1", "bob")}
    assert list(await hub.instances()) == [names.batch_instance_id("bob", "b1", 15)]


async def test_running_work_is_terminated_then_purged(running_hub: TaskHub) -> None:
    hub = running_hub
    running = names.batch_instance_id(USER, "s1", 25)
    instance(hub, running, "Running")
    progress = await DurableSessionHost(hub.client).forget(USER, ["s1"], wait_seconds=1)
    assert hub.client.terminated == [(running, host_module.FORGET_REASON)]
    assert progress.complete and progress.instances_purged == 1 and await hub.instances() == {}


async def test_one_pass_reports_what_is_still_there(running_hub: TaskHub) -> None:
    hub = running_hub
    running = names.batch_instance_id(USER, "s1", 25)
    instance(hub, running, "Running")
    await hot(hub, "s1")
    progress = await DurableSessionHost(hub.client).forget(USER, ["s1"])  # one pass, no waiting
    assert not progress.complete
    # Terminated in this pass: purged by the next one. The entity was asked to delete itself: gone by the next one.
    assert (progress.instances_pending, progress.instances_purged) == (1, 0)
    assert progress.entities_pending == 1 and progress.entities_deleted == 1
    await hub.settle()  # the delete arrives
    assert entity_id("s1") not in await hub.entities()


async def test_work_that_finished_a_moment_ago_is_purged_only_once_quiet(
    running_hub: TaskHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = running_hub
    # What it sent last (a sync that brings the entity back) may still be on its way: wait QUIET_SECONDS.
    monkeypatch.setattr(host_module, "QUIET_SECONDS", 60.0)
    recent = names.batch_instance_id(USER, "s1", 15)
    old = names.batch_instance_id(USER, "s1", 5)
    instance(hub, recent, "Completed", age=timedelta(seconds=1))
    instance(hub, old, "Completed", age=timedelta(minutes=5))
    progress = await DurableSessionHost(hub.client).forget(USER, [])
    assert (progress.instances_purged, progress.instances_pending) == (1, 1)
    assert list(await hub.instances()) == [recent]
    instance(hub, recent, "Completed", age=timedelta(minutes=2, seconds=1))  # two minutes later
    assert (await DurableSessionHost(hub.client).forget(USER, [])).complete
    assert await hub.instances() == {}


async def test_an_entity_brought_back_by_a_late_message_is_deleted_again(running_hub: TaskHub) -> None:
    hub = running_hub
    await hot(hub, "s1")
    host = DurableSessionHost(hub.client)
    first = await host.forget(USER, ["s1"])
    await hub.settle()  # the delete arrives
    assert not first.complete and entity_id("s1") not in await hub.entities()
    await hot(hub, "s1")  # a sync sent before the forget arrives after the delete
    assert not (await host.forget(USER, [])).complete
    await hub.settle()
    assert entity_id("s1") not in await hub.entities()
    assert (await host.forget(USER, [])).complete


async def test_the_cleanup_timer_carries_on_a_pending_forget(
    functions: dict[str, Any], running_hub: TaskHub, service: MemoryService
) -> None:
    hub = running_hub
    # A forget whose DELETE never answered (the instance died): only its marker is left, with the user's work.
    await service.store.begin_forget(USER, datetime.now(UTC) - use_cases.FOLLOW_UP_AFTER - timedelta(seconds=1))
    await service.store.begin_forget("bob", datetime.now(UTC))  # too young: its DELETE may still be at it
    await hot(hub, "s1")
    instance(hub, names.reflection_instance_id(USER, "s1"), "Completed")
    timer = functions["cleanup_timer"].get_user_function().client_function
    assert await timer(timer=TimerRequest(past_due=False), client=hub.client) is None
    await hub.settle()  # the delete arrives
    assert await hub.instances() == {} and await hub.entities() == set()
    # The entity was asked to delete itself in that run: the next one sees it gone.
    assert [p.user_id for p in await service.store.pending_forgets()] == [USER, "bob"]
    assert await use_cases.continue_forgets(service, DurableSessionHost(hub.client)) == 1
    assert [p.user_id for p in await service.store.pending_forgets()] == ["bob"]
