"""The instance query pages as the Durable extension pages it, and lists entities as the Azure Storage back end does.

The extension's `HttpApiHandler.HandleGetStatusRequestAsync` takes the page size from `top` (default 100,
`OrchestrationStatusQueryCondition.PageSize`) and the token from the request's `x-ms-continuation-token` header, and
answers the next token in the same header ("null" after the last page); entities are rows of the Instances table,
listed under `@name@key` with their existence in `customStatus` (shared reference `azure-runtime-behaviour.md`,
"Management API"). `orchestrations.management.HttpInstanceManagement`, what forgetting a user pages with, is tested here
against it.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import aiohttp
import azure.durable_functions as df
import pytest_asyncio

from devhost import DevHost
from orchestrations.management import HttpInstanceManagement
from tests.devhost.conftest import eventually, wait_for

API = "/runtime/webhooks/durabletask"
MANY = 230  # more than two pages of 100


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def finished(client: df.DurableOrchestrationClient, prefix: str, count: int) -> list[str]:
    """``count`` finished instances under ``prefix``."""
    ids = [f"{prefix}-{n:03d}" for n in range(count)]
    await asyncio.gather(*(client.start_new("one_activity", instance_id, n) for n, instance_id in enumerate(ids)))
    for instance_id in ids:
        await wait_for(client, instance_id)
    return ids


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def many(client: df.DurableOrchestrationClient) -> tuple[str, list[str]]:
    """MANY finished instances under one prefix (left in place: the tests that take it only read)."""
    prefix = unique("many")
    return prefix, await finished(client, prefix, MANY)


async def pages(http: aiohttp.ClientSession, params: dict[str, str]) -> list[list[dict]]:
    """Every page of a query, following the continuation token."""
    found, token = [], None
    for _ in range(50):
        headers = {"x-ms-continuation-token": token} if token else {}
        async with http.get(f"{API}/instances/", params=params, headers=headers) as response:
            assert response.status == 200
            found.append(await response.json())
            token = response.headers["x-ms-continuation-token"]
        if token == "null":
            return found
    raise AssertionError("the token never ended")


async def test_a_query_without_top_answers_pages_of_100_and_a_token_to_the_next(http, many):
    prefix, ids = many
    found = await pages(http, {"instanceIdPrefix": prefix, "showInput": "false"})
    assert [len(page) for page in found] == [100, 100, MANY - 200]
    listed = [status["instanceId"] for page in found for status in page]
    assert listed == sorted(ids)  # each once, in id order (the Instances table's key order)
    assert all(status["input"] is None for page in found for status in page)


async def test_the_sdk_without_the_token_sees_the_first_page_only(client: df.DurableOrchestrationClient, many):
    # What get_status_by does on Azure: no page size sent, the continuation token ignored.
    prefix, _ = many
    assert len(await client.get_status_by(instance_id_prefix=prefix)) == 100


async def test_purging_between_pages_skips_nothing(http, client: df.DurableOrchestrationClient):
    prefix = unique("purged")
    ids = [f"{prefix}-{n}" for n in range(5)]
    for n, instance_id in enumerate(ids):
        await client.start_new("one_activity", instance_id, n)
    for instance_id in ids:
        await wait_for(client, instance_id)
    params = {"instanceIdPrefix": prefix, "top": "2"}
    async with http.get(f"{API}/instances/", params=params) as response:
        first = [s["instanceId"] for s in await response.json()]
        token = response.headers["x-ms-continuation-token"]
    for instance_id in first:  # what a forget does with each page
        await client.purge_instance_history(instance_id)
    rest = []
    while token != "null":
        async with http.get(f"{API}/instances/", params=params, headers={"x-ms-continuation-token": token}) as r:
            rest += [s["instanceId"] for s in await r.json()]
            token = r.headers["x-ms-continuation-token"]
    assert first + rest == ids


async def test_a_bad_continuation_token_is_a_400(http):
    headers = {"x-ms-continuation-token": "not-a-token"}
    async with http.get(f"{API}/instances/", params={"top": "2"}, headers=headers) as response:
        assert response.status == 400


async def test_entities_are_listed_as_instances_and_purged_by_their_instance_id(
    http, client: df.DurableOrchestrationClient
):
    key = unique("listed")
    entity = df.EntityId("counter", key)
    await client.signal_entity(entity, "add", 3)

    async def exists() -> bool:
        return (await client.read_entity_state(entity)).entity_exists

    await eventually(exists)
    instance_id = f"@counter@{key}"
    (page,) = await pages(http, {"instanceIdPrefix": "@counter@" + key})
    (status,) = page
    assert status["instanceId"] == instance_id and status["runtimeStatus"] == "Running"
    assert status["customStatus"] == {"entityExists": True}
    assert json.loads(status["input"]["state"]) == 3
    async with http.get(f"{API}/instances/{instance_id}") as response:
        assert response.status == 202 and (await response.json())["instanceId"] == instance_id
    # Orchestrations do not come with a prefix that is not theirs; a status filter without Running leaves entities out.
    assert (await pages(http, {"instanceIdPrefix": "@counter@" + key, "runtimeStatus": "Completed"})) == [[]]

    async with http.delete(f"{API}/instances/{instance_id}") as response:
        assert response.status == 200 and (await response.json()) == {"instancesDeleted": 1}
    assert not await exists()
    async with http.delete(f"{API}/instances/{instance_id}") as response:  # nothing left: 0, not a 404
        assert response.status == 200 and (await response.json()) == {"instancesDeleted": 0}
    async with http.get(f"{API}/instances/{instance_id}") as response:
        assert response.status == 404


async def test_the_forget_client_follows_every_page_and_terminates_and_purges(host: DevHost):
    client = df.DurableOrchestrationClient(host.client_binding)
    prefix = unique("forget")
    ids = await finished(client, prefix, 150)
    management = HttpInstanceManagement(json.loads(host.client_binding)["rpcBaseUrl"])
    try:
        listed = await management.list_instances(prefix)
        assert [i.instance_id for i in listed] == sorted(ids)
        assert all(i.runtime_status == "Completed" and i.last_updated is not None for i in listed)

        running = await client.start_new("wait_event", f"{prefix}-running")
        await wait_for(client, running, {"Running"})
        (info,) = [i for i in await management.list_instances(prefix) if i.instance_id == running]
        assert info.running
        assert await management.purge(running) == 0  # a running instance is not purged (412)
        await management.terminate(running, "forgotten")
        await wait_for(client, running, {"Terminated"})
        await management.terminate(running, "again")  # finished: nothing to do, no error
        assert await management.purge(running) == 1
        assert await management.purge(running) == 0  # unknown: 404

        for instance_id in ids:
            assert await management.purge(instance_id) == 1
        assert await management.list_instances(prefix) == []

        key = unique("gone")
        await client.signal_entity(df.EntityId("counter", key), "add", 1)
        await eventually(lambda: management.list_instances(f"@counter@{key}"))
        (entity,) = await management.list_instances(f"@counter@{key}")
        assert entity.entity_exists is True and entity.running
        assert await management.purge(entity.instance_id) == 1
        assert await management.list_instances(f"@counter@{key}") == []
    finally:
        await management.aclose()
