"""The Functions MCP extension's server, as devhost runs it: the tool triggers behind an MCP server.

What the extension (Azure/azure-functions-mcp-extension, host extension 1.x on the MCP C# SDK 0.4) does, and so this
module, for the transports of ``devhost.mcp_http``:

* ``initialize`` answers the protocol version the client asks for when it is one of 2024-11-05, 2025-03-26 and
  2025-06-18, else 2025-06-18; ``serverInfo`` is host.json's ``extensions.mcp.serverName``/``serverVersion``
  (default "Azure Functions MCP server" 1.0.0) and ``instructions`` its ``instructions``; the capabilities are tools,
  resources, prompts and logging.
* ``tools/list`` lists every tool trigger: its ``toolName``, ``description`` and an input schema built from its
  ``toolProperties`` as the extension builds it (``input_schema``). ``resources/list``, ``resources/templates/list``
  and ``prompts/list`` are empty (the app has no resource or prompt triggers); ``ping`` and ``logging/setLevel``
  answer ``{}``.
* ``tools/call``: an unknown tool, or a required property missing or null, is a JSON-RPC error (InvalidParams,
  -32602) with the extension's text. Otherwise the function runs with the trigger's value, the extension's
  ``ToolInvocationContext`` as JSON (``invocation_context``), and its return value becomes the result: with
  ``useResultSchema``, the ``McpToolResult`` envelope it returns (``call_tool_result`` answered as is; a content block,
  or ``multi_content_result``, with ``structuredContent``); without, its text as one text block. A function that
  raises, or returns what the envelope cannot be read from, is answered ``isError`` with "An error occurred invoking
  '<tool>'." (the C# SDK's text), the cause in the host's log.
* Any other method is a JSON-RPC error (MethodNotFound, -32601).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devhost.functions import McpToolFunction
from devhost.store import ensure_private

logger = logging.getLogger(__name__)

PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18")
LATEST_PROTOCOL_VERSION = PROTOCOL_VERSIONS[-1]
DEFAULT_SERVER_NAME = "Azure Functions MCP server"
DEFAULT_SERVER_VERSION = "1.0.0"

INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
EMPTY_LISTS = {
    "resources/list": "resources",
    "resources/templates/list": "resourceTemplates",
    "prompts/list": "prompts",
}


@dataclass(frozen=True)
class McpOptions:
    """host.json's ``extensions.mcp``: what the server says of itself, and how its endpoints behave."""

    server_name: str = DEFAULT_SERVER_NAME
    server_version: str = DEFAULT_SERVER_VERSION
    instructions: str | None = None
    absolute_message_uri: bool = False  # messageOptions.useAbsoluteUriForEndpoint (SSE only)
    anonymous: bool = False  # system.webhookAuthorizationLevel "Anonymous": no key on the endpoints

    @classmethod
    def from_host_json(cls, script_root: Path) -> McpOptions:
        """The options host.json sets (the extension reads its keys in any case)."""
        path = script_root / "host.json"
        document = json.loads(path.read_text(encoding="utf-8-sig")) if path.is_file() else {}
        section = _lower_keys(_lower_keys(document).get("extensions")).get("mcp")
        mcp = _lower_keys(section)
        messages = _lower_keys(mcp.get("messageoptions"))
        system = _lower_keys(mcp.get("system"))
        level = str(system.get("webhookauthorizationlevel") or "System")
        return cls(
            server_name=str(mcp.get("servername") or DEFAULT_SERVER_NAME),
            server_version=str(mcp.get("serverversion") or DEFAULT_SERVER_VERSION),
            instructions=str(mcp["instructions"]) if mcp.get("instructions") else None,
            absolute_message_uri=bool(messages.get("useabsoluteuriforendpoint", False)),
            anonymous=level.lower() == "anonymous",
        )


def _lower_keys(value: Any) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def input_schema(properties: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The tool's input schema from its ``toolProperties``, as the extension writes it (PropertyBasedToolInputSchema).

    ``{"type": "object", "properties": {name: {"type", "enum"?, "description"}}, "required": [...]}``; an array
    property is ``{"type": "array", "items": {"type", "enum"?}, "description"}``; ``required`` is always there.
    """
    written: dict[str, Any] = {}
    for prop in properties:
        name = str(prop.get("propertyName") or "")
        if not name.strip():
            continue
        typed: dict[str, Any] = {"type": str(prop.get("propertyType") or "string")}
        if prop.get("enumValues"):
            typed["enum"] = [str(v) for v in prop["enumValues"]]
        entry = {"type": "array", "items": typed} if prop.get("isArray") else typed
        written[name] = {**entry, "description": str(prop.get("description") or "")}
    required = list(dict.fromkeys(str(p["propertyName"]) for p in properties if p.get("isRequired")))
    return {"type": "object", "properties": written, "required": [r for r in required if r in written]}


@dataclass
class Connection:
    """What a message came with: the transport, the HTTP headers the extension sees, the client as far as known.

    ``headers`` are those of the request whose HttpContext the extension's MCP server runs in: the POST itself with
    streamable HTTP, the SSE GET with SSE.
    """

    transport: str  # "http-streamable" or "http-sse", as the extension names them
    headers: dict[str, str]
    client_info: dict[str, Any] | None = None


Invoke = Callable[[McpToolFunction, str], Awaitable[Any]]


@dataclass
class McpServer:
    """JSON-RPC over the tool triggers; ``invoke(tool, context_json)`` runs a function and returns what it returned."""

    tools: list[McpToolFunction]
    invoke: Invoke
    options: McpOptions = field(default_factory=McpOptions)

    def __post_init__(self) -> None:
        self._by_name = {t.tool_name.lower(): t for t in self.tools}  # the registry's names are case-insensitive

    async def dispatch(self, message: Mapping[str, Any], connection: Connection) -> dict[str, Any] | None:
        """The answer to one JSON-RPC message: a response to a request, None for a notification or a response."""
        if "method" not in message or "id" not in message:
            return None
        request_id, method = message["id"], str(message["method"])
        raw_params = message.get("params")
        params: Mapping[str, Any] = raw_params if isinstance(raw_params, Mapping) else {}
        try:
            result = await self._handle(method, params, connection)
        except McpProtocolError as error:
            return {"jsonrpc": "2.0", "id": request_id, "error": {"code": error.code, "message": str(error)}}
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def _handle(self, method: str, params: Mapping[str, Any], connection: Connection) -> dict[str, Any]:
        if method == "initialize":
            return self._initialize(params, connection)
        if method == "tools/list":
            return {"tools": [self._listed(t) for t in self.tools]}
        if method == "tools/call":
            return await self._call(params, connection)
        if method in ("ping", "logging/setLevel"):
            return {}
        if method in EMPTY_LISTS:
            return {EMPTY_LISTS[method]: []}
        if method == "resources/read":
            raise McpProtocolError(f"Unknown resource: '{params.get('uri')}'", INVALID_PARAMS)
        if method == "prompts/get":
            raise McpProtocolError(f"Unknown prompt: '{params.get('name')}'", INVALID_PARAMS)
        raise McpProtocolError(f"Method '{method}' is not available.", METHOD_NOT_FOUND)

    def _initialize(self, params: Mapping[str, Any], connection: Connection) -> dict[str, Any]:
        asked = params.get("protocolVersion")
        info = params.get("clientInfo")
        connection.client_info = dict(info) if isinstance(info, Mapping) else None
        result: dict[str, Any] = {
            "protocolVersion": asked if asked in PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION,
            "capabilities": {"logging": {}, "prompts": {}, "resources": {}, "tools": {}},
            "serverInfo": {"name": self.options.server_name, "version": self.options.server_version},
        }
        if self.options.instructions:
            result["instructions"] = self.options.instructions
        return result

    @staticmethod
    def _listed(tool: McpToolFunction) -> dict[str, Any]:
        listed: dict[str, Any] = {"name": tool.tool_name}
        if tool.description:
            listed["description"] = tool.description
        listed["inputSchema"] = input_schema(tool.properties)
        return listed

    async def _call(self, params: Mapping[str, Any], connection: Connection) -> dict[str, Any]:
        name = params.get("name")
        tool = self._by_name.get(name.lower()) if isinstance(name, str) else None
        if tool is None:
            raise McpProtocolError(f"Unknown tool: '{name or ''}'", INVALID_PARAMS)
        arguments = params.get("arguments")
        arguments = dict(arguments) if isinstance(arguments, Mapping) else None
        missing = [p for p in required_properties(tool) if arguments is None or arguments.get(p) is None]
        if missing:
            raise McpProtocolError(
                "One or more required tool properties are missing values. Please provide: " + ", ".join(missing),
                INVALID_PARAMS,
            )
        context = invocation_context(str(name), arguments, connection)  # the name as the client asked for it
        try:
            returned = await self.invoke(tool, json.dumps(context))
            return tool_result(tool, returned)
        except Exception:
            logger.exception("MCP tool %s (function %s) failed", tool.tool_name, tool.name)
            return {
                "content": [{"type": "text", "text": f"An error occurred invoking '{tool.tool_name}'."}],
                "isError": True,
            }


class McpProtocolError(Exception):
    """A JSON-RPC error answer (the C# SDK's McpProtocolException)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def required_properties(tool: McpToolFunction) -> list[str]:
    """The properties a call must give a value (not null)."""
    return list(dict.fromkeys(str(p["propertyName"]) for p in tool.properties if p.get("isRequired")))


def invocation_context(tool_name: str, arguments: dict[str, Any] | None, connection: Connection) -> dict[str, Any]:
    """The extension's ToolInvocationContext, as the trigger's value carries it (null members left out).

    ``sessionid`` is the transport's session id, the ``Mcp-Session-Id`` header of streamable HTTP (none with SSE).
    ``clientinfo`` is what ``initialize`` said, known only within an SSE session (streamable HTTP runs a new server
    per request). ``transport.properties.headers``: the request's headers, several values of one name
    joined with a comma.
    """
    transport: dict[str, Any] = {"name": connection.transport}
    session_id = next((v for k, v in connection.headers.items() if k.lower() == "mcp-session-id"), None)
    if session_id is not None:
        transport["sessionId"] = session_id
    transport["properties"] = {"headers": dict(connection.headers)}
    context: dict[str, Any] = {"name": tool_name}
    if arguments is not None:
        context["arguments"] = arguments
    if session_id is not None:
        context["sessionid"] = session_id
    if connection.client_info is not None:
        context["clientinfo"] = connection.client_info
    context["transport"] = transport
    return context


def tool_result(tool: McpToolFunction, returned: Any) -> dict[str, Any]:
    """The CallToolResult of what the function returned (the extension's ToolReturnValueBinder and its simple twin).

    Raises:
        ValueError: with ``useResultSchema``, a value that is no McpToolResult envelope (answered as a tool error).
    """
    if returned is None:
        return {"content": []}
    if not tool.use_result_schema:
        text = returned.decode("utf-8") if isinstance(returned, bytes | bytearray) else str(returned)
        return {"content": [{"type": "text", "text": text}]}
    if not isinstance(returned, str):
        raise ValueError(f"Expected a JSON string, got {type(returned).__name__}")
    envelope = _lower_keys(json.loads(returned))
    kind = str(envelope.get("type") or "")
    content = envelope.get("content")
    if not kind or not isinstance(content, str):
        raise ValueError("The function return value could not be deserialized to a valid McpToolResult")
    if kind.lower() == "call_tool_result":
        result = json.loads(content)
        if not isinstance(result, dict) or not isinstance(result.get("content", []), list):
            raise ValueError("Failed to deserialize CallToolResult")
        return result
    blocks = json.loads(content) if kind.lower() == "multi_content_result" else [json.loads(content)]
    if not isinstance(blocks, list) or not blocks or not all(isinstance(b, dict) and "type" in b for b in blocks):
        raise ValueError(f"No content items were produced from the McpToolResult of type '{kind}'")
    answer: dict[str, Any] = {"content": blocks}
    if envelope.get("structuredcontent"):
        answer["structuredContent"] = json.loads(str(envelope["structuredcontent"]))
    return answer


class ClientStates:
    """The client state the extension hands out (``Mcp-Session-Id``, the SSE ``azmcpcs`` parameter) and reads back.

    The extension encrypts the client id and its instance id with the host's keys, so a state stays valid across
    restarts. devhost signs them (HMAC-SHA256) with a secret kept in the state directory (``mcp-state.key``), for the
    same effect; the instance id is new for each run of the host.
    """

    def __init__(self, state_dir: Path) -> None:
        path = state_dir / "mcp-state.key"
        if not path.is_file():
            state_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32), encoding="utf-8")
            ensure_private(path)
        self._secret = bytes.fromhex(path.read_text(encoding="utf-8").strip())
        self.instance_id = secrets.token_hex(8)

    def issue(self, client_id: str) -> str:
        """A state for ``client_id`` on this instance."""
        payload = _b64(json.dumps([client_id, self.instance_id]).encode("utf-8"))
        return f"{payload}.{_b64(self._sign(payload))}"

    def read(self, state: str) -> tuple[str, str] | None:
        """(client id, instance id) of a state this host issued, else None."""
        payload, _, signature = state.partition(".")
        try:
            if not hmac.compare_digest(_unb64(signature), self._sign(payload)):
                return None
            client_id, instance_id = json.loads(_unb64(payload))
        except (ValueError, binascii.Error, TypeError):
            return None
        return str(client_id), str(instance_id)

    def _sign(self, payload: str) -> bytes:
        return hmac.new(self._secret, payload.encode("ascii", "replace"), hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
