"""Memory as MCP tools, end to end: the official ``mcp`` SDK client against ``run_server.py``, keys on.

The guide's flow runs through the tools only (context, store, search, end, reflection Completed, a new session that
sees the insights), over streamable HTTP and over SSE; errors come back as tool errors with the HTTP API's texts;
the endpoints take the ``mcp_extension`` system key; an Agent Framework agent's MCP tool loads and calls them; and
with the Easy Auth stand-in the user is the signed-in principal.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import ClientSession, MCPError
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.conftest import SHARED_SETTINGS
from tests.e2e.helpers import background_wait, eventually, unique
from tests.e2e.test_guide_flow import BASE_TIME, CONVERSATION
from tests.support.service import MemoryServiceProcess

pytestmark = pytest.mark.e2e

MCP = "/runtime/webhooks/mcp"
TRANSPORTS = ["streamable", "sse"]
TOOLS = {
    "get_memory_context",
    "store_turn",
    "search_memory",
    "list_insights",
    "list_session_summaries",
    "end_session",
    "get_reflection_status",
    "forget_user",
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryServiceProcess]:
    """The service with function keys checked, as on Azure, and forget_user enabled."""
    settings = {**SHARED_SETTINGS, "MCP_ALLOW_FORGET": "true"}
    with MemoryServiceProcess(tmp_path_factory.mktemp("e2e-mcp"), settings, keys={}) as running:
        yield running


@asynccontextmanager
async def connect(
    service: MemoryServiceProcess, transport: str, headers: dict[str, str] | None = None
) -> AsyncIterator[ClientSession]:
    """An initialized MCP session with the service, with the mcp_extension key unless ``headers`` say otherwise."""
    if headers is None:
        headers = {"x-functions-key": service.mcp_key or ""}
    if transport == "streamable":
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(f"{service.base_url}{MCP}", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session
    else:
        async with (
            sse_client(f"{service.base_url}{MCP}/sse", headers=headers, timeout=60) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


async def call(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    """A tool's structured result; the call must succeed."""
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    [block] = result.content
    assert result.structured_content is not None and json.loads(block.text) == result.structured_content
    return result.structured_content


async def failure(session: ClientSession, tool: str, **arguments: Any) -> tuple[dict[str, Any], str]:
    """A tool error: its structured body and its text."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error is True, result.structured_content
    [block] = result.content
    assert result.structured_content is not None
    return result.structured_content, block.text


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_tools_are_listed_with_their_schemas(service: MemoryServiceProcess, transport: str):
    async with connect(service, transport) as session:
        listed = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert set(listed) == TOOLS
    store = listed["store_turn"].input_schema
    assert store["type"] == "object" and store["required"] == ["session_id", "user_message", "agent_message"]
    assert store["properties"]["metadata"]["type"] == "object"
    assert store["properties"]["user_message"] == {
        "type": "string",
        "description": "What the user said in this turn, verbatim.",
    }
    search = listed["search_memory"].input_schema
    assert search["required"] == ["query"] and search["properties"]["top_k"]["type"] == "integer"
    for tool in listed.values():
        assert tool.description and len(tool.description) > 60
        assert "user_id" in tool.input_schema["properties"] and "user_id" not in tool.input_schema["required"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_guide_flow_through_the_tools_only(service: MemoryServiceProcess, transport: str):
    user = unique(f"mcp-{transport}")
    async with connect(service, transport) as session:
        started = await call(session, "get_memory_context", user_id=user)
        session_id = started["session_id"]
        assert started["restored"] is False and started["turn_count"] == 0 and started["insights"] == []

        for index, (user_message, agent_message) in enumerate(CONVERSATION):
            stored = await call(
                session,
                "store_turn",
                user_id=user,
                session_id=session_id,
                turn_id=f"t{index + 1:02d}",
                user_message=user_message,
                agent_message=agent_message,
                timestamp=(BASE_TIME + timedelta(minutes=index)).isoformat(),
                metadata={"channel": "mcp", "index": index},
            )
            assert stored["seq"] == index + 1 and stored["duplicate"] is False
        again = await call(
            session, "store_turn", user_id=user, session_id=session_id, turn_id="t01",
            user_message=CONVERSATION[0][0], agent_message=CONVERSATION[0][1],
        )  # fmt: skip
        assert again["duplicate"] is True and again["seq"] == 1

        context = await call(session, "get_memory_context", user_id=user, session_id=session_id)
        assert context["session_id"] == session_id and context["turn_count"] == len(CONVERSATION)
        assert context["active_context"][-2] == {"role": "user", "content": CONVERSATION[-1][0]}

        found = await call(session, "search_memory", user_id=user, query="Which city do I live in?", top_k=5)
        assert any("Portland" in fact for fact in found["facts"]), found["facts"]

        ended = await call(session, "end_session", user_id=user, session_id=session_id)
        assert ended["status"] == "reflecting" and ended["id"]
        # The service's own status route, on the address the client used: the function key reads it, no system key.
        status_url = ended["statusQueryGetUri"]
        assert status_url == f"{service.base_url}/sessions/reflection?user_id={user}&session_id={session_id}"
        async with httpx.AsyncClient(timeout=30) as http:
            followed = await http.get(status_url, headers={"x-functions-key": service.function_key or ""})
        assert followed.status_code in (200, 202) and followed.json()["instanceId"] == ended["id"]

        async def reflected() -> dict[str, Any] | None:
            status = await call(session, "get_reflection_status", user_id=user, session_id=session_id)
            return status if status["runtimeStatus"] in ("Completed", "Failed", "Terminated") else None

        status = await eventually(reflected, within=background_wait(service, 8), interval=0.5)
        assert status["runtimeStatus"] == "Completed", status
        assert status["output"]["insights_added"] and status["output"]["summary"]

        insights = await call(session, "list_insights", user_id=user)
        assert insights["count"] == len(status["output"]["insights_added"])
        assert any("Portland" in text for text in insights["insights"]), insights["insights"]
        summaries = await call(session, "list_session_summaries", user_id=user, limit=5)
        assert summaries["count"] == 1 and summaries["items"][0]["session_id"] == session_id

        following = await call(session, "get_memory_context", user_id=user)
        assert following["session_id"] != session_id and following["restored"] is False
        assert following["insights"] and following["session_summaries"] == [status["output"]["summary"]]
        assert any(text in following["formatted_context"] for text in following["insights"])


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_errors_are_tool_errors_with_the_http_apis_texts(service: MemoryServiceProcess, transport: str):
    user = unique("mcp-errors")
    keyed = {"x-functions-key": service.function_key or ""}
    async with connect(service, transport) as session, httpx.AsyncClient(base_url=service.base_url, timeout=30) as http:
        session_id = (await call(session, "get_memory_context", user_id=user))["session_id"]
        await call(session, "end_session", user_id=user, session_id=session_id)
        turn = {"user_id": user, "session_id": session_id, "agent_message": "x"}
        cases = [
            ("store_turn", "/memory/store", {**turn, "user_message": "hi"}),
            ("store_turn", "/memory/store", {**turn, "user_message": " "}),
            ("search_memory", "/memory/retrieve", {"user_id": user, "query": "x", "top_k": 0}),
            ("get_memory_context", "/sessions/start", {"user_id": user, "session_id": session_id}),
            ("list_insights", "/insights", {"user_id": user, "unknown": True}),
        ]  # fmt: skip
        for tool, route, arguments in cases:
            reply = await http.post(route, json=arguments, headers=keyed)
            assert 400 <= reply.status_code < 500, reply.text
            body, text = await failure(session, tool, **arguments)
            assert body == reply.json() and text == reply.text, (tool, arguments)
        # The extension checks the required properties itself: a JSON-RPC error, not a tool error.
        with pytest.raises(MCPError) as missing:
            await session.call_tool("store_turn", {"user_id": user, "session_id": session_id})
        assert missing.value.code == -32602 and "user_message, agent_message" in missing.value.message


async def test_the_endpoints_take_the_mcp_extension_key_or_the_master_key(service: MemoryServiceProcess):
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18"}}
    accept = {"Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as http:
        for key in (None, service.function_key, "wrong"):
            headers = {**accept, **({"x-functions-key": key} if key else {})}
            assert (await http.post(MCP, json=initialize, headers=headers)).status_code == 401
            assert (await http.get(f"{MCP}/sse", headers=headers)).status_code == 401
        for key in (service.mcp_key, service.master_key):
            reply = await http.post(MCP, json=initialize, headers={**accept, "x-functions-key": key or ""})
            assert reply.status_code == 200 and reply.headers["Mcp-Session-Id"]
            by_query = await http.post(MCP, json=initialize, headers=accept, params={"code": key})
            assert by_query.status_code == 200


async def test_forget_user_deletes_the_users_memory_when_enabled(service: MemoryServiceProcess):
    user = unique("mcp-forget")
    async with connect(service, "streamable") as session:
        session_id = (await call(session, "get_memory_context", user_id=user))["session_id"]
        await call(
            session, "store_turn", user_id=user, session_id=session_id,
            user_message="I keep bees in my garden.", agent_message="How lovely.",
        )  # fmt: skip
        receipt = await call(session, "forget_user", user_id=user)
        assert receipt["complete"] is True and receipt["sessions"] == 1 and receipt["turns"] == 1
        found = await call(session, "search_memory", user_id=user, query="bees")
        assert found["count"] == 0


@pytest.mark.filterwarnings("ignore:ping is removed")  # the framework's own keep-alive
async def test_an_agent_framework_agent_uses_the_tools(service: MemoryServiceProcess):
    from agent_framework import MCPStreamableHTTPTool

    user = unique("mcp-agent")
    memory = MCPStreamableHTTPTool(
        name="memory", url=f"{service.base_url}{MCP}", static_headers={"x-functions-key": service.mcp_key or ""}
    )
    async with memory:
        assert TOOLS <= {function.name for function in memory.functions}
        contents = await memory.call_tool("get_memory_context", user_id=user)
    [content] = contents
    assert content.type == "text" and json.loads(content.text or "")["user_id"] == user


# -- who the user is: the signed-in principal ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def principal_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryServiceProcess]:
    """The service behind the Easy Auth stand-in, so CALLER_IDENTITY=principal."""
    with MemoryServiceProcess(tmp_path_factory.mktemp("e2e-mcp-principal"), SHARED_SETTINGS, easy_auth=True) as running:
        yield running


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_with_principal_mode_the_tools_use_the_signed_in_users_memory(
    principal_service: MemoryServiceProcess, transport: str
):
    alice, bob = unique("oid-alice"), unique("oid-bob")
    signed_in = {"Authorization": f"Bearer devhost-principal:{alice}"}
    async with connect(principal_service, transport, signed_in) as session:
        started = await call(session, "get_memory_context")
        assert started["user_id"] == alice
        stored = await call(
            session, "store_turn", session_id=started["session_id"], user_message="I live in Oslo.", agent_message="Ok."
        )
        assert stored["user_id"] == alice
        body, _ = await failure(session, "search_memory", user_id=bob, query="Oslo")
        assert body["error"] == "ForbiddenError" and body["field"] == "user_id"
    async with connect(principal_service, transport, {}) as anonymous:
        body, _ = await failure(anonymous, "list_insights", user_id=alice)
        assert body["error"] == "UnauthenticatedError"


# -- the example -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_mcp_example_runs_the_flow_with_the_key(service: MemoryServiceProcess, transport: str):
    example = Path(__file__).resolve().parents[2] / "examples" / "mcp_tools.py"
    command = [sys.executable, str(example), "--url", service.base_url, "--user", unique("example")]
    if transport == "sse":
        command.append("--sse")
    env = {**os.environ, "MEMORY_MCP_KEY": service.mcp_key or ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for line in (
        "Tools:",
        "  store_turn(user_id, session_id*, user_message*, agent_message*, turn_id, timestamp, metadata)",
        "< stored: seq 1-16",
        "    - User: I want to retire at 60.",
        '< tool error (isError: True): {"error":"SessionEndedError"',
        "Done: every step worked",
    ):
        assert line in done.stdout, f"{line!r} missing from:\n{done.stdout}"
    completed = re.search(r"^< Completed: (\d+) insights added$", done.stdout, re.MULTILINE)
    assert completed is not None and int(completed.group(1)) > 0, done.stdout
    unkeyed = subprocess.run(
        [sys.executable, str(example), "--url", service.base_url],
        capture_output=True, text=True, timeout=60, env={**os.environ, "MEMORY_MCP_KEY": ""}, check=False,
    )  # fmt: skip
    assert unkeyed.returncode == 2 and "is not available" in unkeyed.stderr
