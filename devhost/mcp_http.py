"""The MCP extension's endpoints on devhost: streamable HTTP at ``/runtime/webhooks/mcp``, SSE at ``.../mcp/sse``.

As the extension serves them (its ``DefaultRequestHandler``, ``StreamableHttpRequestHandler``, ``SseRequestHandler``):

* Every path under ``/runtime/webhooks/mcp`` reaches the extension. One ending in ``sse`` is the SSE transport's
  stream, one ending in ``message`` its message endpoint; any other is the streamable HTTP endpoint.
* **Keys.** The endpoints need the extension's system key, ``mcp_extension`` (or the master key), in the
  ``x-functions-key`` header or the ``code`` query parameter, unless host.json sets
  ``extensions.mcp.system.webhookAuthorizationLevel`` to ``Anonymous``. devhost checks them with ``--enable-auth``
  only, as it does every key; a missing or wrong key is a 401.
* **Streamable HTTP** is stateless: POST only (any other method is a 405 without a body); the client must accept both
  ``application/json`` and ``text/event-stream`` (else 406). A request is answered as a server-sent event stream,
  ``event: message`` with the response, then the stream ends; a notification or a response is a 202 without a body.
  The answer to ``initialize`` carries ``Mcp-Session-Id``, the client state; a request that carries one the host
  cannot read is a 400. Errors of the endpoint itself are JSON-RPC error objects (code -32000).
* **SSE**: ``GET .../sse`` opens the stream, whose first event, ``endpoint``, names the message endpoint relative to
  it, ``message?azmcpcs=<client state>``, with ``&code=<key>`` when the GET carried a key (or absolute, with
  ``messageOptions.useAbsoluteUriForEndpoint``). Messages POSTed there are answered 202 ``Accepted``, and the
  responses come as ``event: message`` on the stream. Every 25 s the server sends the client a ``ping`` request.
* With ``--easy-auth`` the App Service Authentication stand-in (``devhost.easyauth``) comes first, as App Service
  Authentication sees every request of the site: the headers a tool call carries are those it leaves and injects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any
from urllib.parse import quote

from aiohttp import web

from devhost.easyauth import UnknownTokenError, app_headers, principal_of
from devhost.errors import error_response
from devhost.keys import MCP_SYSTEM_KEY, Keys, authorized_system, presented_key
from devhost.mcp import ClientStates, Connection, McpOptions, McpServer

logger = logging.getLogger(__name__)

MCP_PATH = "/runtime/webhooks/mcp"
STATE_QUERY = "azmcpcs"
SESSION_HEADER = "Mcp-Session-Id"
PING_SECONDS = 25.0
_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache,no-store",
    "Content-Encoding": "identity",
}
_CONNECT_AGAIN = "Please connect to the /sse endpoint to initiate your session."


def is_mcp_path(path: str) -> bool:
    """Whether the extension's webhook serves ``path``."""
    return path.lower() == MCP_PATH or path.lower().startswith(MCP_PATH + "/")


def sse_event(event: str, data: str) -> bytes:
    """One server-sent event."""
    lines = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\n{lines}\n".encode()


class _SseSession:
    """One open SSE stream: what it carries out, and the requests it is working on."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self.ping_id = 0


class McpEndpoint:
    """The extension's webhook: ``handle`` every request whose path ``is_mcp_path``; ``close`` ends the SSE streams."""

    def __init__(
        self, server: McpServer, states: ClientStates, options: McpOptions, keys: Keys | None, easy_auth: bool
    ) -> None:
        self.server = server
        self.states = states
        self.options = options
        self.keys = keys
        self.easy_auth = easy_auth
        self._sessions: dict[str, _SseSession] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Easy Auth's stand-in, the key, then the transport the path names."""
        headers = _joined_headers(request)
        if self.easy_auth:
            try:
                principal = principal_of(request.headers)
            except UnknownTokenError as exc:
                return error_response(401, "Unauthorized", str(exc))
            headers = app_headers(headers, principal)
        if self.keys is not None and not self.options.anonymous:
            if not authorized_system(self.keys, request, MCP_SYSTEM_KEY):
                detail = (
                    "The MCP endpoints need the MCP extension's system key (mcp_extension) or the master key, in the "
                    "x-functions-key header or the code query parameter"
                )
                return error_response(401, "Unauthorized", detail)
        trimmed = request.path.rstrip("/").lower()
        if trimmed.endswith("sse"):
            return await self._sse(request, headers)
        if trimmed.endswith("message"):
            return await self._message(request)
        return await self._streamable(request, headers)

    async def close(self) -> None:
        """End every SSE stream (the host is stopping)."""
        for session in list(self._sessions.values()):
            session.outbox.put_nowait(None)

    # ------------------------------------------------------------------ streamable HTTP

    async def _streamable(self, request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405)
        accept = request.headers.get("Accept", "").lower()
        if "application/json" not in accept or "text/event-stream" not in accept:
            return _rpc_error("Not Acceptable: Client must accept both application/json and text/event-stream", 406)
        state = request.headers.get(SESSION_HEADER)
        if state and self.states.read(state) is None:
            return _rpc_error("Invalid client state.", 400)
        message = _json_rpc(await request.read())
        if message is None:
            return _rpc_error("Bad Request: The POST body did not contain a valid JSON-RPC message.", 400)
        connection = Connection("http-streamable", headers)
        if "method" not in message or "id" not in message:
            await self.server.dispatch(message, connection)  # a notification or a response: nothing to answer
            return web.Response(status=202)
        response = web.StreamResponse(status=200, headers=_SSE_HEADERS)
        if message["method"] == "initialize":
            response.headers[SESSION_HEADER] = self.states.issue(uuid.uuid4().hex)
        await response.prepare(request)
        answer = await self.server.dispatch(message, connection)
        await response.write(sse_event("message", _compact(answer)))
        await response.write_eof()
        return response

    # ------------------------------------------------------------------ SSE

    async def _sse(self, request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        if request.method != "GET":
            return web.Response(status=405)
        client_id = uuid.uuid4().hex
        endpoint = f"message?{STATE_QUERY}={self.states.issue(client_id)}"
        key = presented_key(request)
        if key is not None:
            endpoint += f"&code={quote(key, safe='')}"
        if self.options.absolute_message_uri:
            base = str(request.url.with_query(None)).rstrip("/")
            endpoint = f"{base.rsplit('/', 1)[0]}/{endpoint}"
        session = _SseSession(Connection("http-sse", headers))
        self._sessions[client_id] = session
        response = web.StreamResponse(status=200, headers=_SSE_HEADERS)
        try:
            await response.prepare(request)
            await response.write(sse_event("endpoint", endpoint))
            await self._pump(request, response, session)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self._sessions.pop(client_id, None)
            for task in session.tasks:
                task.cancel()
        return response

    async def _pump(self, request: web.Request, response: web.StreamResponse, session: _SseSession) -> None:
        """Write what the session sends until the client disconnects or the host stops; ping every 25 s."""
        idle = 0.0
        while request.transport is not None and not request.transport.is_closing():
            try:
                outgoing = await asyncio.wait_for(session.outbox.get(), timeout=1.0)
            except TimeoutError:
                idle += 1.0
                if idle < PING_SECONDS:
                    continue
                session.ping_id += 1
                outgoing = {"jsonrpc": "2.0", "id": session.ping_id, "method": "ping"}
            if outgoing is None:
                return
            idle = 0.0
            await response.write(sse_event("message", _compact(outgoing)))

    async def _message(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405)
        state = request.query.get(STATE_QUERY)
        if state is None:
            return _bad_request(f"Missing service context. {_CONNECT_AGAIN}")
        read = self.states.read(state)
        if read is None:
            return _bad_request(f"Invalid client state. {_CONNECT_AGAIN}")
        client_id, instance_id = read
        message = _json_rpc(await request.read())
        if message is None:
            return _bad_request("No message in request body.")
        session = self._sessions.get(client_id)
        if session is None:
            # On Azure a state of another instance goes to that instance through the backplane (a storage queue).
            return _bad_request(
                f"No active session for client '{client_id}' and instance '{instance_id}'. {_CONNECT_AGAIN}"
            )
        task = asyncio.create_task(self._answer(session, message))
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)
        return web.Response(status=202, text="Accepted")

    async def _answer(self, session: _SseSession, message: dict[str, Any]) -> None:
        answer = await self.server.dispatch(message, session.connection)
        if answer is not None:
            await session.outbox.put(answer)


def _compact(message: Any) -> str:
    """A message as the extension writes it (System.Text.Json: no spaces, non-ASCII escaped)."""
    return json.dumps(message, separators=(",", ":"))


def _joined_headers(request: web.Request) -> dict[str, str]:
    """The request's headers, several values of one name joined with a comma (names as the client wrote them)."""
    joined: dict[str, str] = {}
    names: dict[str, str] = {}
    for name, value in request.headers.items():
        first = names.setdefault(name.lower(), name)
        joined[first] = f"{joined[first]},{value}" if first in joined else value
    return joined


def _json_rpc(body: bytes) -> dict[str, Any] | None:
    """A JSON-RPC 2.0 message, or None (not JSON, NaN or Infinity included, or not a message)."""
    try:
        message = json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return None
    if "method" not in message and "id" not in message:
        return None
    return message


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _rpc_error(message: str, status: int) -> web.Response:
    return web.json_response({"jsonrpc": "2.0", "error": {"code": -32000, "message": message}}, status=status)


def _bad_request(message: str) -> web.Response:
    return web.json_response(message, status=400)
