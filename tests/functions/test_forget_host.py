"""``DurableSessionHost.forget`` over the fake task hub: what it finds, stops, deletes and purges, and what it reports
as pending; the cleanup timer carrying on a pending forget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from memory_core import api
from memory_core import session as rules
from memory_core.service import MemoryService
from orchestrations import host as host_module
from orchestrations import names
from orchestrations.host import DurableSessionHost
from tests.functions.durable import FakeDurableClient, Instance

pytestmark = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")

USER = "alice"


def entity_id(session_id: str, user_id: str = USER) -> str:
    return f"@session@{names.session_key(user_id, session_id)}"


def hot(client: FakeDurableClient, session_id: str, user_id: str = USER) -> None:
    """A session entity with state, as a batch's sync leaves it (whatever the store says)."""
    record = rules.new_record(user_id, session_id, datetime.now(UTC))
    state, _ = rules.sync(None, rules.SessionSnapshot.of(record, []), 5, 10)
    client.set_entity_state(names.SESSION_ENTITY, names.session_key(user_id, session_id), state.model_dump(mode="json"))


def instance(client: FakeDurableClient, instance_id: str, status: str, age: timedelta = timedelta(hours=1)) -> None:
    client.instances[instance_id] = Instance("process_turns", instance_id, {}, datetime.now(UTC) - age, status)


async def test_hot_sessions_are_found_by_prefix_even_when_the_store_lists_none(client: FakeDurableClient) -> None:
    hot(client, "s1")
    hot(client, "s2")
    hot(client, "b1", user_id="bob")
    instance(client, names.batch_instance_id(USER, "s1", 15), "Completed")
    instance(client, names.batch_instance_id("bob", "b1", 15), "Completed")
    progress = await DurableSessionHost(client).forget(USER, [], wait_seconds=1)
    assert progress.complete
    assert (progress.instances_purged, progress.entities_deleted) == (1, 2)
    assert set(client.entities) == {entity_id("b1", "bob")}
    assert list(client.instances) == [names.batch_instance_id("bob", "b1", 15)]


async def test_running_work_is_terminated_then_purged(client: FakeDurableClient) -> None:
    running = names.batch_instance_id(USER, "s1", 25)
    instance(client, running, "Running")
    progress = await DurableSessionHost(client).forget(USER, ["s1"], wait_seconds=1)
    assert client.terminated == [(running, host_module.FORGET_REASON)]
    assert progress.complete and progress.instances_purged == 1 and client.instances == {}


async def test_one_pass_reports_what_is_still_there(client: FakeDurableClient) -> None:
    running = names.batch_instance_id(USER, "s1", 25)
    instance(client, running, "Running")
    hot(client, "s1")
    progress = await DurableSessionHost(client).forget(USER, ["s1"])  # one pass, no waiting
    assert not progress.complete
    # Terminated in this pass: purged by the next one. The entity was asked to delete itself: gone by the next one.
    assert (progress.instances_pending, progress.instances_purged) == (1, 0)
    assert progress.entities_pending == 1 and progress.entities_deleted == 1
    assert entity_id("s1") not in client.entities  # (the fake applies signals at once)


async def test_work_that_finished_a_moment_ago_is_purged_only_once_quiet(
    client: FakeDurableClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What it sent last (a sync that brings the entity back) may still be on its way: wait QUIET_SECONDS.
    monkeypatch.setattr(host_module, "QUIET_SECONDS", 60.0)
    recent = names.batch_instance_id(USER, "s1", 15)
    old = names.batch_instance_id(USER, "s1", 5)
    instance(client, recent, "Completed", age=timedelta(seconds=1))
    instance(client, old, "Completed", age=timedelta(minutes=5))
    progress = await DurableSessionHost(client).forget(USER, [])
    assert (progress.instances_purged, progress.instances_pending) == (1, 1)
    assert list(client.instances) == [recent]
    client.instances[recent].created -= timedelta(minutes=2)
    assert (await DurableSessionHost(client).forget(USER, [])).complete
    assert client.instances == {}


async def test_an_entity_brought_back_by_a_late_message_is_deleted_again(client: FakeDurableClient) -> None:
    hot(client, "s1")
    host = DurableSessionHost(client)
    first = await host.forget(USER, ["s1"])
    assert not first.complete and entity_id("s1") not in client.entities
    hot(client, "s1")  # a sync sent before the forget arrives after the delete
    assert not (await host.forget(USER, [])).complete
    assert entity_id("s1") not in client.entities
    assert (await host.forget(USER, [])).complete


async def test_the_cleanup_timer_carries_on_a_pending_forget(
    functions: dict[str, Any], client: FakeDurableClient, service: MemoryService
) -> None:
    # A forget whose DELETE never answered (the instance died): only its marker is left, with the user's work.
    await service.store.begin_forget(USER, datetime.now(UTC) - api.FOLLOW_UP_AFTER - timedelta(seconds=1))
    await service.store.begin_forget("bob", datetime.now(UTC))  # too young: its DELETE may still be at it
    hot(client, "s1")
    instance(client, names.reflection_instance_id(USER, "s1"), "Completed")
    timer = functions["cleanup_timer"].get_user_function().client_function
    assert await timer(timer=TimerRequest(past_due=False), client=client) is None
    assert client.instances == {} and client.entities == {}
    # The entity was asked to delete itself in that run: the next one sees it gone.
    assert [p.user_id for p in await service.store.pending_forgets()] == [USER, "bob"]
    assert await api.continue_forgets(service, DurableSessionHost(client)) == 1
    assert [p.user_id for p in await service.store.pending_forgets()] == ["bob"]
