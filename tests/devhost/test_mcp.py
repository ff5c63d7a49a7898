"""The MCP extension's endpoints on devhost, spoken to by the official ``mcp`` SDK client (and raw HTTP for the edges).

The app (``tests/devhost/mcp_app``) declares its tools both ways the ``azure-functions`` library offers: ``mcp_tool``
(text results) and ``mcp_tool_trigger`` with ``useResultSchema`` (the McpToolResult envelope).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import pytest
import pytest_asyncio
from mcp import ClientSession, MCPError
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from devhost import DevHost, HostOptions
from devhost.mcp import ClientStates, input_schema

APP = "tests.devhost.mcp_app.function_app"
APP_DIR = Path(__file__).parent / "mcp_app"
MCP = "/runtime/webhooks/mcp"
TRANSPORTS = ["streamable", "sse"]
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def script_root(root: Path, host_json: dict[str, Any] | None) -> Path:
    """A folder with the app's host.json, or with ``host_json``."""
    root.mkdir(parents=True, exist_ok=True)
    if host_json is None:
        shutil.copy(APP_DIR / "host.json", root / "host.json")
    else:
        (root / "host.json").write_text(json.dumps(host_json))
    return root


async def start_host(root: Path, host_json: dict[str, Any] | None = None, **options: Any) -> DevHost:
    root = script_root(root, host_json)
    running = DevHost(
        HostOptions(app=APP, script_root=root, state_dir=root / "state", port=0, durable_latency_ms=0, **options)
    )
    await running.start()
    return running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def mcp_host(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevHost]:
    running = await start_host(tmp_path_factory.mktemp("mcp"))
    yield running
    await running.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevHost]:
    running = await start_host(tmp_path_factory.mktemp("mcp-keys"), enable_auth=True)
    yield running
    await running.stop()


@asynccontextmanager
async def connect(
    base_url: str, transport: str, headers: dict[str, str] | None = None, query: str = ""
) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session over one transport."""
    if transport == "streamable":
        async with (
            httpx2.AsyncClient(headers=headers or {}, timeout=30) as http,
            streamable_http_client(f"{base_url}{MCP}{query}", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session
    else:
        async with (
            sse_client(f"{base_url}{MCP}/sse{query}", headers=headers) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def text_of(result: Any) -> str:
    [block] = result.content
    return str(block.text)


# -- the protocol, with the SDK's client ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_initialize_names_the_server_of_host_json_and_a_version_the_extension_speaks(
    mcp_host: DevHost, transport: str
):
    async with connect(mcp_host.base_url, transport) as session:
        result = await session.initialize()
    # The client offers 2025-11-25; the extension's C# SDK speaks up to 2025-06-18 and counters with it.
    assert result.protocol_version == "2025-06-18"
    assert (result.server_info.name, result.server_info.version) == ("devhost-tests", "2.0.0")
    assert result.instructions == "Tools of the devhost tests."
    assert result.capabilities.tools is not None and result.capabilities.resources is not None


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_tools_are_listed_with_the_schemas_the_extension_builds(mcp_host: DevHost, transport: str):
    async with connect(mcp_host.base_url, transport) as session:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert (await session.list_resources()).resources == [] and (await session.list_prompts()).prompts == []
    assert set(listed) == {"echo", "whoami", "explode", "refuse", "rich", "garbled"}
    assert listed["echo"].description == "Echo a message."
    assert listed["echo"].input_schema == {
        "type": "object",
        "properties": {
            "message": {"type": "string", "description": "What to echo."},
            "times": {"type": "integer", "description": "How often."},
        },
        "required": ["message"],
    }
    # mcp_tool leaves MCPToolContext out of the properties; "required" is always there.
    assert listed["whoami"].input_schema == {"type": "object", "properties": {}, "required": []}
    kinds = listed["refuse"].input_schema["properties"]["kinds"]
    assert kinds == {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "description": "Which kinds."}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tools_answer_text_structured_content_and_their_own_tool_errors(mcp_host: DevHost, transport: str):
    async with connect(mcp_host.base_url, transport) as session:
        echoed = await session.call_tool("echo", {"message": "hi", "times": 2})
        rich = await session.call_tool("rich", {})
        refused = await session.call_tool("refuse", {"kinds": ["a"]})
    assert not echoed.is_error and text_of(echoed) == "hi hi" and echoed.structured_content is None
    assert text_of(rich) == "hi" and rich.structured_content == {"greeting": "hi"}
    assert refused.is_error is True and text_of(refused) == "refused" and refused.structured_content == {"why": "test"}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_function_that_fails_is_a_tool_error_that_names_only_the_tool(mcp_host: DevHost, transport: str):
    async with connect(mcp_host.base_url, transport) as session:
        exploded = await session.call_tool("explode", {})
        garbled = await session.call_tool("garbled", {})
    assert exploded.is_error and text_of(exploded) == "An error occurred invoking 'explode'."
    assert garbled.is_error and text_of(garbled) == "An error occurred invoking 'garbled'."


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_missing_property_or_an_unknown_tool_is_a_protocol_error(mcp_host: DevHost, transport: str):
    async with connect(mcp_host.base_url, transport) as session:
        with pytest.raises(MCPError) as missing:
            await session.call_tool("echo", {"times": 2})
        with pytest.raises(MCPError) as null:
            await session.call_tool("echo", {"message": None})
        with pytest.raises(MCPError) as unknown:
            await session.call_tool("nope", {})
    assert missing.value.code == null.value.code == unknown.value.code == -32602
    assert missing.value.message == "One or more required tool properties are missing values. Please provide: message"
    assert null.value.message == missing.value.message
    assert unknown.value.message == "Unknown tool: 'nope'"


async def test_over_streamable_http_a_tool_gets_the_post_its_headers_and_the_session_state(mcp_host: DevHost):
    async with connect(mcp_host.base_url, "streamable", {"X-Test": "one"}) as session:
        context = json.loads(text_of(await session.call_tool("whoami", {"extra": [1, 2]})))
    assert context["name"] == "whoami" and context["arguments"] == {"extra": [1, 2]}
    transport = context["transport"]
    assert transport["name"] == "http-streamable"
    headers = {k.lower(): v for k, v in transport["properties"]["headers"].items()}
    assert headers["x-test"] == "one" and headers["host"] == mcp_host.base_url.split("//", 1)[1]
    # Stateless: the session id is the client state of Mcp-Session-Id; no server knows the client's initialize.
    assert context["sessionid"] == transport["sessionId"] == headers["mcp-session-id"]
    assert "clientinfo" not in context


async def test_over_sse_a_tool_gets_the_streams_headers_and_the_clients_info(mcp_host: DevHost):
    async with connect(mcp_host.base_url, "sse", {"X-Test": "two"}) as session:
        context = json.loads(text_of(await session.call_tool("whoami", {})))
    assert context["transport"]["name"] == "http-sse"
    headers = {k.lower(): v for k, v in context["transport"]["properties"]["headers"].items()}
    assert headers["x-test"] == "two" and headers["accept"] == "text/event-stream"
    assert context["clientinfo"]["name"] == "mcp" and "sessionid" not in context


# -- the edges, over raw HTTP --------------------------------------------------------------------------------------


async def post(http: aiohttp.ClientSession, body: Any, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post(MCP, data=data, headers=headers if headers is not None else ACCEPT)


async def test_streamable_http_takes_posts_of_clients_that_accept_both_media_types(mcp_host: DevHost):
    request = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2024-11-05"}}
    async with aiohttp.ClientSession(base_url=mcp_host.base_url) as http:
        async with http.get(MCP) as response:
            assert response.status == 405 and await response.read() == b""
        async with http.delete(MCP) as response:
            assert response.status == 405
        async with await post(http, request, {"Accept": "application/json"}) as response:
            assert response.status == 406
            assert (await response.json())["error"]["message"].startswith("Not Acceptable")
        async with await post(http, request) as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")
            state = response.headers["Mcp-Session-Id"]
            body = (await response.read()).decode()
        assert body.startswith("event: message\ndata: ") and body.endswith("\n\n")
        answer = json.loads(body.split("data: ", 1)[1])
        assert answer["id"] == 1 and answer["result"]["protocolVersion"] == "2024-11-05"
        notification = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        async with await post(http, notification, {**ACCEPT, "Mcp-Session-Id": state}) as response:
            assert response.status == 202 and await response.read() == b""
        async with await post(
            http, {"jsonrpc": "2.0", "id": 2, "method": "ping"}, {**ACCEPT, "Mcp-Session-Id": "forged"}
        ) as response:
            assert response.status == 400 and (await response.json())["error"]["message"] == "Invalid client state."
        for garbage in (b"not json", b'{"jsonrpc": "2.0", "id": NaN, "method": "ping"}', b"[]"):
            async with await post(http, garbage) as response:
                assert response.status == 400, garbage
        async with await post(http, {"jsonrpc": "2.0", "id": 3, "method": "no/such"}) as response:
            error = json.loads((await response.read()).decode().split("data: ", 1)[1])["error"]
        assert error == {"code": -32601, "message": "Method 'no/such' is not available."}


async def test_the_sse_message_endpoint_needs_the_state_of_an_open_stream(mcp_host: DevHost):
    async with aiohttp.ClientSession(base_url=mcp_host.base_url) as http:
        async with http.post(f"{MCP}/message", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}) as response:
            assert response.status == 400 and "Missing service context" in await response.json()
        async with http.post(f"{MCP}/message?azmcpcs=forged", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}) as r:
            assert r.status == 400 and "Invalid client state" in await r.json()
        async with http.get(f"{MCP}/sse") as stream:
            first = (await stream.content.readuntil(b"\n\n")).decode()
        assert first.startswith("event: endpoint\ndata: message?azmcpcs=")
        endpoint = first.split("data: ", 1)[1].strip()
        ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}

        async def refused() -> bool:
            async with http.post(f"{MCP}/{endpoint}", json=ping) as response:
                return response.status == 400 and "No active session" in await response.json()

        deadline = asyncio.get_running_loop().time() + 10
        while not await refused():  # the stream closed: the host notices within a second
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)


async def test_a_host_without_mcp_tools_serves_no_mcp_endpoint(http: aiohttp.ClientSession):
    async with http.post(MCP, json={}) as response:
        assert response.status == 404


# -- keys ----------------------------------------------------------------------------------------------------------


async def test_with_keys_the_endpoints_take_the_mcp_extension_key_or_the_master_key(secured: DevHost):
    assert secured.keys is not None
    mcp_key, master = secured.keys.system["mcp_extension"], secured.keys.master
    assert f"'mcp_extension': {mcp_key}" in secured.banner()
    async with aiohttp.ClientSession(base_url=secured.base_url) as http:
        for headers in ({}, {"x-functions-key": secured.keys.default_function_key}, {"x-functions-key": "wrong"}):
            async with http.post(MCP, json={}, headers={**ACCEPT, **headers}) as response:
                assert response.status == 401
                assert "mcp_extension" in (await response.json())["detail"]
            async with http.get(f"{MCP}/sse", headers=headers) as response:
                assert response.status == 401
    for transport in TRANSPORTS:
        async with connect(secured.base_url, transport, {"x-functions-key": mcp_key}) as session:
            assert text_of(await session.call_tool("echo", {"message": "k"})) == "k"
        async with connect(secured.base_url, transport, query=f"?code={master}") as session:
            assert text_of(await session.call_tool("echo", {"message": "m"})) == "m"


async def test_the_sse_endpoint_event_carries_the_key_the_stream_was_opened_with(secured: DevHost):
    assert secured.keys is not None
    key = secured.keys.system["mcp_extension"]
    async with aiohttp.ClientSession(base_url=secured.base_url) as http:
        async with http.get(f"{MCP}/sse", headers={"x-functions-key": key}) as stream:
            first = (await stream.content.readuntil(b"\n\n")).decode()
    assert first.strip().endswith(f"&code={key}")


async def test_host_json_can_make_the_endpoints_anonymous(tmp_path: Path):
    host_json = {"version": "2.0", "extensions": {"mcp": {"system": {"webhookAuthorizationLevel": "Anonymous"}}}}
    running = await start_host(tmp_path / "anonymous", host_json, enable_auth=True)
    try:
        async with connect(running.base_url, "streamable") as session:
            result = await session.initialize()
            assert result.server_info.name == "Azure Functions MCP server" and result.instructions is None
            assert text_of(await session.call_tool("echo", {"message": "open"})) == "open"
    finally:
        await running.stop()


async def test_easy_auth_stands_in_front_of_the_mcp_endpoints(tmp_path: Path):
    running = await start_host(tmp_path / "easy", easy_auth=True)
    try:
        signed_in = {"Authorization": "Bearer devhost-principal:alice", "X-MS-CLIENT-PRINCIPAL-ID": "mallory"}
        for transport in TRANSPORTS:
            async with connect(running.base_url, transport, signed_in) as session:
                context = json.loads(text_of(await session.call_tool("whoami", {})))
            headers = {k.lower(): v for k, v in context["transport"]["properties"]["headers"].items()}
            assert headers["x-ms-client-principal-id"] == "alice" and "x-ms-client-principal" in headers
        async with connect(running.base_url, "streamable", {"X-MS-CLIENT-PRINCIPAL-ID": "mallory"}) as session:
            context = json.loads(text_of(await session.call_tool("whoami", {})))
        assert "x-ms-client-principal-id" not in {k.lower() for k in context["transport"]["properties"]["headers"]}
        async with aiohttp.ClientSession(base_url=running.base_url) as http:
            async with http.post(MCP, json={}, headers={**ACCEPT, "Authorization": "Bearer eyJ.not.ours"}) as r:
                assert r.status == 401
    finally:
        await running.stop()


# -- units -----------------------------------------------------------------------------------------------------------


def test_a_client_state_outlives_the_host_and_cannot_be_forged(tmp_path: Path):
    first = ClientStates(tmp_path)
    state = first.issue("client-1")
    again = ClientStates(tmp_path)  # the host restarted on the same state directory
    assert again.read(state) == ("client-1", first.instance_id)
    assert again.instance_id != first.instance_id
    payload, _, signature = state.partition(".")
    assert again.read(f"{payload}x.{signature}") is None and again.read("nonsense") is None
    assert ClientStates(tmp_path / "other").read(state) is None


def test_the_input_schema_skips_nameless_properties_and_lists_each_required_one_once():
    properties = [
        {"propertyName": "a", "propertyType": "integer", "isRequired": True},
        {"propertyName": " ", "propertyType": "string", "isRequired": True},
        {"propertyName": "b", "propertyType": "object", "description": "B", "isArray": True},
    ]
    assert input_schema(properties) == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": ""},
            "b": {"type": "array", "items": {"type": "object"}, "description": "B"},
        },
        "required": ["a"],
    }
