"""The Durable HTTP API: every DurableOrchestrationClient method, and the raw HTTP shapes and status codes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import aiohttp
import azure.durable_functions as df
import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from devhost import DevHost
from tests.devhost.conftest import eventually, wait_for

API = "/runtime/webhooks/durabletask"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------- through the SDK client


async def test_start_new_without_id_generates_one(client: df.DurableOrchestrationClient):
    instance_id = await client.start_new("one_activity", None, "sdk")
    status = await wait_for(client, instance_id)
    assert len(instance_id) == 32
    assert status.runtime_status == OrchestrationRuntimeStatus.Completed
    assert status.output == "Hello sdk"
    assert status.name == "one_activity"


async def test_get_status_flags_control_input_and_history(client: df.DurableOrchestrationClient):
    instance_id = await client.start_new("one_activity", unique("flags"), {"x": 1})
    await wait_for(client, instance_id)
    plain = await client.get_status(instance_id)
    assert plain.input_ == '{"x": 1}'  # the JSON text, as the extension returns it
    assert plain.historyEvents is None
    full = await client.get_status(instance_id, show_history=True, show_history_output=True, show_input=True)
    kinds = [event["EventType"] for event in full.historyEvents]
    assert kinds == ["ExecutionStarted", "TaskCompleted", "ExecutionCompleted"]
    assert full.historyEvents[1]["FunctionName"] == "hello"
    assert full.historyEvents[1]["Result"] == "Hello {'x': 1}"
    assert full.historyEvents[2]["OrchestrationStatus"] == "Completed"
    without_output = await client.get_status(instance_id, show_history=True)
    assert "Result" not in without_output.historyEvents[1]


async def test_get_status_of_unknown_instance_is_falsy(client: df.DurableOrchestrationClient):
    assert not await client.get_status("no-such-instance")


async def test_raise_event_reaches_the_orchestration_as_json_text(client: df.DurableOrchestrationClient):
    instance_id = await client.start_new("wait_event", unique("event"))
    await wait_for(client, instance_id, {"Running"})
    await client.raise_event(instance_id, "go", {"by": "me"})
    status = await wait_for(client, instance_id)
    assert status.output == {"data": '{"by": "me"}'}


async def test_event_raised_before_the_orchestration_waits_is_buffered(client: df.DurableOrchestrationClient):
    instance_id = await client.start_new("wait_event", unique("early"))
    await client.raise_event(instance_id, "go", 7)
    status = await wait_for(client, instance_id)
    assert status.output == {"data": "7"}


async def test_raise_event_errors(client: df.DurableOrchestrationClient):
    with pytest.raises(Exception, match="No instance"):
        await client.raise_event("missing-instance", "go", 1)
    instance_id = await client.start_new("one_activity", unique("gone"), "x")
    await wait_for(client, instance_id)
    with pytest.raises(Exception, match="is gone"):
        await client.raise_event(instance_id, "go", 1)


async def test_terminate_stops_a_running_instance(client: df.DurableOrchestrationClient):
    instance_id = await client.start_new("wait_event", unique("term"))
    await wait_for(client, instance_id, {"Running"})
    await client.terminate(instance_id, "stale session")
    status = await wait_for(client, instance_id)
    assert status.runtime_status == OrchestrationRuntimeStatus.Terminated
    assert status.output == "stale session"
    await client.terminate(instance_id, "again")  # 410 is accepted by the client
    with pytest.raises(Exception, match="No instance"):
        await client.terminate("missing-instance", "x")


async def test_purge_one_instance(client: df.DurableOrchestrationClient):
    instance_id = await client.start_new("one_activity", unique("purge"), "x")
    await wait_for(client, instance_id)
    assert (await client.purge_instance_history(instance_id)).instances_deleted == 1
    assert not await client.get_status(instance_id)
    assert (await client.purge_instance_history(instance_id)).instances_deleted == 0


async def test_purge_refuses_a_running_instance(client: df.DurableOrchestrationClient):
    instance_id = await client.start_new("wait_event", unique("purge-running"))
    await wait_for(client, instance_id, {"Running"})
    with pytest.raises(Exception, match="412"):
        await client.purge_instance_history(instance_id)
    await client.terminate(instance_id, "cleanup")


async def test_list_and_purge_by_filters(client: df.DurableOrchestrationClient):
    prefix = unique("batch")
    before = datetime.now(UTC) - timedelta(seconds=1)
    done = [await client.start_new("one_activity", f"{prefix}-done-{i}", i) for i in range(3)]
    running = await client.start_new("wait_event", f"{prefix}-running")
    for instance_id in done:
        await wait_for(client, instance_id)
    await wait_for(client, running, {"Running"})

    everything = await client.get_status_all()
    assert {*done, running} <= {s.instance_id for s in everything}
    by_prefix = await client.get_status_by(instance_id_prefix=prefix)
    assert {s.instance_id for s in by_prefix} == {*done, running}
    completed = await client.get_status_by(
        created_time_from=before,
        runtime_status=[OrchestrationRuntimeStatus.Completed],
        instance_id_prefix=prefix,
    )
    assert {s.instance_id for s in completed} == set(done)
    assert await client.get_status_by(created_time_to=before, instance_id_prefix=prefix) == []

    purged = await client.purge_instance_history_by(
        created_time_from=before, runtime_status=[OrchestrationRuntimeStatus.Completed]
    )
    assert purged.instances_deleted >= 3
    assert {s.instance_id for s in await client.get_status_by(instance_id_prefix=prefix)} == {running}
    await client.terminate(running, "cleanup")


async def test_duplicate_id_of_a_running_instance_is_refused_and_not_run_twice(
    client: df.DurableOrchestrationClient,
):
    instance_id = unique("dup")
    await client.start_new("wait_event", instance_id)
    with pytest.raises(Exception, match="already exists"):
        await client.start_new("wait_event", instance_id)
    await client.raise_event(instance_id, "go", 1)
    status = await wait_for(client, instance_id)
    started = [e for e in status.historyEvents if e["EventType"] == "ExecutionStarted"]
    assert len(started) == 1
    # a finished instance is replaced by a new run
    again = await client.start_new("wait_event", instance_id)
    assert again == instance_id
    replaced = await wait_for(client, instance_id, {"Running"})
    assert replaced.created_time >= status.created_time
    await client.terminate(instance_id, "cleanup")


async def test_start_of_unknown_orchestrator_raises(client: df.DurableOrchestrationClient):
    with pytest.raises(Exception, match="doesn't exist"):
        await client.start_new("no_such_orchestrator", None, None)


async def test_wait_for_completion_or_check_status_response(client: df.DurableOrchestrationClient, host: DevHost):
    import azure.functions as func

    request = func.HttpRequest("POST", f"{host.base_url}/api/start/x", body=b"")
    instance_id = await client.start_new("one_activity", unique("wait"), "w")
    response = await client.wait_for_completion_or_create_check_status_response(request, instance_id, 5000, 50)
    assert response.status_code == 200
    assert response.get_body() == b"Hello w"  # the SDK sends a str output as is
    waiting = await client.start_new("wait_event", unique("wait-timeout"))
    response = await client.wait_for_completion_or_create_check_status_response(request, waiting, 200, 50)
    assert response.status_code == 202
    payload = json.loads(response.get_body())
    assert payload["statusQueryGetUri"].startswith(f"{host.base_url}{API}/instances/{waiting}?")
    await client.terminate(waiting, "cleanup")


# ---------------------------------------------------------------------- entities


async def test_signal_and_read_entity_state(client: df.DurableOrchestrationClient):
    entity = df.EntityId("counter", unique("k"))
    missing = await client.read_entity_state(entity)
    assert not missing.entity_exists
    for amount in (1, 2, 3):
        await client.signal_entity(entity, "add", amount)

    async def state_is_six():
        state = await client.read_entity_state(entity)
        return state.entity_exists and state.entity_state == 6

    await eventually(state_is_six)
    await client.signal_entity(entity, "delete")

    async def deleted():
        return not (await client.read_entity_state(entity)).entity_exists

    await eventually(deleted)


async def test_entity_operations_run_in_arrival_order(client: df.DurableOrchestrationClient):
    # One signal after another (each acknowledged before the next is sent): the journal must hold them in that order.
    # The inputs start at 1: the SDK's signal_entity sends no input for a falsy one (``if operation_input``).
    entity = df.EntityId("journal", unique("order"))
    for n in range(1, 41):
        await client.signal_entity(entity, "append", n)

    async def journal() -> list[int] | None:
        state = await client.read_entity_state(entity)
        return state.entity_state if state.entity_exists and len(state.entity_state) == 40 else None

    assert await eventually(journal) == list(range(1, 41))


async def test_entity_delete_over_http_is_the_delete_operation(http: aiohttp.ClientSession):
    key = unique("http")
    async with http.post(f"{API}/entities/Counter/{key}?op=add", json=json.dumps(5)) as response:
        assert response.status == 202

    async def read() -> int | None:
        async with http.get(f"{API}/entities/counter/{key}") as response:
            return (await response.json()) if response.status == 200 else None

    assert await eventually(read) == 5
    async with http.delete(f"{API}/entities/counter/{key}") as response:
        assert response.status == 202

    async def gone() -> bool:
        async with http.get(f"{API}/entities/counter/{key}") as response:
            return response.status == 404

    await eventually(gone)


async def test_signal_of_unknown_entity_is_400(http: aiohttp.ClientSession):
    async with http.post(f"{API}/entities/nosuch/k?op=x") as response:
        assert response.status == 400


# ---------------------------------------------------------------------- raw HTTP shapes


async def test_start_over_http_returns_202_with_management_urls(http: aiohttp.ClientSession, host: DevHost):
    instance_id = unique("raw")
    async with http.post(f"{API}/orchestrators/wait_event/{instance_id}") as response:
        assert response.status == 202
        payload = await response.json()
        assert response.headers["Location"] == payload["statusQueryGetUri"]
    assert payload["id"] == instance_id
    base = f"{host.base_url}{API}/instances/{instance_id}"
    assert payload["statusQueryGetUri"] == f"{base}?taskHub=DevhostTests&connection=Storage"
    assert payload["sendEventPostUri"] == f"{base}/raiseEvent/{{eventName}}?taskHub=DevhostTests&connection=Storage"
    assert set(payload) == {
        "id",
        "statusQueryGetUri",
        "sendEventPostUri",
        "terminatePostUri",
        "rewindPostUri",
        "purgeHistoryDeleteUri",
        "restartPostUri",
        "suspendPostUri",
        "resumePostUri",
    }

    async def running() -> bool:
        async with http.get(f"{API}/instances/{instance_id}") as response:
            body = await response.json()
            return response.status == 202 and body["runtimeStatus"] == "Running" and "Retry-After" in response.headers

    await eventually(running)
    async with http.post(f"{API}/instances/{instance_id}/raiseEvent/go", data="not json") as response:
        assert response.status == 400  # only application/json content
    async with http.post(f"{API}/instances/{instance_id}/raiseEvent/go", json="plain") as response:
        assert response.status == 202

    async def completed() -> dict | None:
        async with http.get(f"{API}/instances/{instance_id}?showHistory=true&showInput=false") as response:
            body = await response.json()
            return body if response.status == 200 else None

    body = await eventually(completed)
    assert body["output"] == {"data": "plain"}
    assert body["input"] is None
    assert body["createdTime"].endswith("Z") and "." not in body["createdTime"]
    assert [e["EventType"] for e in body["historyEvents"]] == ["ExecutionStarted", "EventRaised", "ExecutionCompleted"]
    async with http.post(f"{API}/instances/{instance_id}/raiseEvent/go", json="late") as response:
        assert response.status == 410
    async with http.get(f"{API}/instances/unknown-instance") as response:
        assert response.status == 404


@pytest.mark.parametrize("operation", ["suspend", "resume", "rewind", "restart"])
async def test_operations_devhost_does_not_emulate_answer_501_saying_so(http: aiohttp.ClientSession, operation: str):
    async with http.post(f"{API}/instances/any-instance/{operation}?reason=x") as response:
        assert response.status == 501
        body = await response.json()
    assert body["Message"].startswith(f"devhost does not emulate the {operation} operation")


async def test_listing_entities_answers_501(http: aiohttp.ClientSession):
    async with http.get(f"{API}/entities/counter") as response:
        assert response.status == 501
        assert "devhost does not emulate listing entities" in (await response.json())["Message"]


async def test_start_with_the_client_binding_from_an_http_function(http: aiohttp.ClientSession, host: DevHost):
    async with http.post("/api/start/one_activity", json="via http") as response:
        assert response.status == 202
        payload = await response.json()
    status_url = payload["statusQueryGetUri"]
    assert status_url.startswith(f"{host.base_url}{API}/instances/")

    async def done() -> dict | None:
        async with http.get(status_url) as response:
            return (await response.json()) if response.status == 200 else None

    assert (await eventually(done))["output"] == "Hello via http"


async def test_list_pages_with_continuation_token(http: aiohttp.ClientSession, client: df.DurableOrchestrationClient):
    prefix = unique("page")
    for i in range(3):
        await client.start_new("one_activity", f"{prefix}-{i}", i)
    async with http.get(f"{API}/instances/", params={"instanceIdPrefix": prefix, "top": "2"}) as response:
        first = await response.json()
        token = response.headers["x-ms-continuation-token"]
    async with http.get(
        f"{API}/instances/", params={"instanceIdPrefix": prefix, "top": "2"}, headers={"x-ms-continuation-token": token}
    ) as response:
        second = await response.json()
        assert response.headers["x-ms-continuation-token"] == "null"
    assert len(first) == 2 and len(second) == 1
    assert {i["instanceId"] for i in first + second} == {f"{prefix}-{i}" for i in range(3)}
