"""Memory as MCP tools: the official MCP Python SDK's client against a running memory service (``make run``).

    pip install "mcp>=2.3,<3"                        # the client (requirements-dev.txt has it)
    make run                                         # in one terminal: the service on http://localhost:7071
    python examples/mcp_tools.py                     # in another: streamable HTTP
    python examples/mcp_tools.py --sse --user alice  # the SSE transport
    python examples/mcp_tools.py --url https://<app>.azurewebsites.net --key <the mcp_extension system key>

It lists the tools with their properties (``*``: required), then runs the guide's flow through them only: a new
session, 16 turns, a search, the end of the session, its reflection followed to the end, a second session that sees
what the first taught, and a turn sent to the ended session, which comes back as a tool error. Each call is shown as
``> tool {arguments}`` and what it answered as ``<``.

The URL comes from ``--url``, else ``MEMORY_SERVICE_URL``, else http://localhost:7071; the key from ``--key``, else
``MEMORY_MCP_KEY`` (none locally, unless the service runs with ``--enable-auth``). Exit status: 0 when every step
worked, 1 when a step failed, 2 when the service cannot be reached.
"""

# ruff: noqa: T201 (a demo prints)
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from demo1_remote import CONVERSATION, QUERY  # the guide's conversation (this folder is on sys.path)
from mcp import ClientSession, MCPError
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

MCP_PATH = "/runtime/webhooks/mcp"


class StepFailed(Exception):
    """A tool answered something the flow did not expect."""


@asynccontextmanager
async def connect(url: str, key: str | None, sse: bool) -> AsyncIterator[ClientSession]:
    """An initialized MCP session; the key goes in the x-functions-key header, as the extension takes it."""
    headers = {"x-functions-key": key} if key else {}
    if sse:
        async with (
            sse_client(f"{url}{MCP_PATH}/sse", headers=headers, timeout=30) as (read, write),
            ClientSession(read, write) as session,
        ):
            yield session
    else:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(f"{url}{MCP_PATH}", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            yield session


def shown(arguments: dict[str, Any]) -> str:
    """Arguments as JSON, cut to a line."""
    text = json.dumps(arguments, ensure_ascii=False)
    return text if len(text) <= 110 else text[:107] + "..."


async def call(session: ClientSession, tool: str, quiet: bool = False, **arguments: Any) -> dict[str, Any]:
    """Call a tool and return its structured result; a tool error is a failed step."""
    if not quiet:
        print(f"> {tool} {shown(arguments)}")
    result = await session.call_tool(tool, arguments)
    if result.is_error or result.structured_content is None:
        raise StepFailed(f"{tool} answered a tool error: {result.content[0].text if result.content else ''}")
    return result.structured_content


async def list_tools(session: ClientSession) -> None:
    """Each tool with its properties, the required ones starred."""
    print("Tools:")
    for tool in (await session.list_tools()).tools:
        required = set(tool.input_schema.get("required", []))
        names = [f"{name}{'*' if name in required else ''}" for name in tool.input_schema.get("properties", {})]
        print(f"  {tool.name}({', '.join(names)})")


async def flow(session: ClientSession, user: str, reflection_timeout: float) -> None:
    """The guide's flow through the tools only."""
    started = await call(session, "get_memory_context", user_id=user)
    session_id = started["session_id"]
    print(f"< session_id {session_id}, turn_count {started['turn_count']}, insights {started['insights']}")

    print(f"> store_turn x{len(CONVERSATION)} {{user_id, session_id, turn_id, user_message, agent_message}}")
    for index, (user_message, agent_message) in enumerate(CONVERSATION, 1):
        await call(
            session, "store_turn", quiet=True, user_id=user, session_id=session_id, turn_id=f"t{index}",
            user_message=user_message, agent_message=agent_message,
        )  # fmt: skip
    print(f"< stored: seq 1-{len(CONVERSATION)}")

    found = await call(session, "search_memory", user_id=user, query=QUERY, top_k=3)
    print(f"< {found['count']} facts:")
    for fact in found["facts"]:
        print("    - " + fact.replace("\n", "\n      "))

    ended = await call(session, "end_session", user_id=user, session_id=session_id)
    print(f"< {ended['status']}: {ended['statusQueryGetUri']}")

    print(f"> get_reflection_status {shown({'user_id': user, 'session_id': session_id})} (until it is done)")
    deadline = time.monotonic() + reflection_timeout
    while True:
        status = await call(session, "get_reflection_status", quiet=True, user_id=user, session_id=session_id)
        if status["runtimeStatus"] in ("Completed", "Failed", "Terminated"):
            break
        if time.monotonic() > deadline:
            raise StepFailed(f"the reflection is still {status['runtimeStatus']} after {reflection_timeout:g}s")
        await asyncio.sleep(0.5)
    output = status["output"] or {}
    print(f"< {status['runtimeStatus']}: {len(output.get('insights_added', []))} insights added")
    if status["runtimeStatus"] != "Completed":
        raise StepFailed(f"the reflection ended {status['runtimeStatus']}: {output}")

    following = await call(session, "get_memory_context", user_id=user)
    print(f"< a new session {following['session_id']}, insights:")
    for insight in following["insights"][:5]:
        print(f"    - {insight}")
    if not following["insights"]:
        raise StepFailed("the new session's context has no insights")

    turn = {"user_id": user, "session_id": session_id, "user_message": "One more thing.", "agent_message": "Yes?"}
    print(f"> store_turn {shown(turn)}")
    refused = await session.call_tool("store_turn", turn)
    print(f"< tool error (isError: {refused.is_error}): {refused.content[0].text}")


async def demo(url: str, key: str | None, sse: bool, user: str, reflection_timeout: float) -> None:
    """Connect, list the tools, run the flow."""
    async with connect(url, key, sse) as session:
        init = await session.initialize()
        transport = "SSE" if sse else "streamable HTTP"
        print(f"MCP server: {init.server_info.name} {init.server_info.version} (protocol {init.protocol_version}), "
              f"{transport} at {url}{MCP_PATH}{'/sse' if sse else ''}")  # fmt: skip
        await list_tools(session)
        print(f"User: {user}")
        await flow(session, user, reflection_timeout)
    print("Done: every step worked")


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions an exception group holds, however nested (the exception itself otherwise)."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def main(argv: list[str] | None = None) -> int:
    """Run the demo; the exit status says how it went."""
    parser = argparse.ArgumentParser(description="The memory service's MCP tools, called with the official MCP SDK.")
    parser.add_argument("--url", default=os.environ.get("MEMORY_SERVICE_URL", "http://localhost:7071"))
    parser.add_argument("--key", default=os.environ.get("MEMORY_MCP_KEY"), help="the mcp_extension system key")
    parser.add_argument("--sse", action="store_true", help="use the SSE transport (default: streamable HTTP)")
    parser.add_argument("--user", default=f"dana-{uuid.uuid4().hex[:8]}", help="the user id (default: a new one)")
    parser.add_argument("--reflection-timeout", type=float, default=120.0, help="seconds to wait for reflection")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    try:
        asyncio.run(demo(url, args.key, args.sse, args.user, args.reflection_timeout))
    except Exception as error:  # the SDK's task groups wrap what went wrong in exception groups
        causes = leaves(error)
        failed = next((cause for cause in causes if isinstance(cause, StepFailed)), None)
        if failed is not None:
            print(f"FAILED: {failed}", file=sys.stderr)
            return 1
        refused = next((cause for cause in causes if isinstance(cause, OSError | httpx2.HTTPError | MCPError)), None)
        if refused is None:
            raise
        print(
            f"ERROR: the MCP endpoint at {url}{MCP_PATH} is not available ({refused!r}): is the service running, "
            "and is the key right?",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
