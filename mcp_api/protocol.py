"""The MCP tool trigger's contract with the Functions MCP extension, for this app's tools.

The extension (Azure/azure-functions-mcp-extension) serves the tools at ``/runtime/webhooks/mcp`` (streamable HTTP)
and ``/runtime/webhooks/mcp/sse``, and lists each tool trigger with the input schema it builds from the trigger's
``toolProperties``. A tools/call runs the function:

* **In:** the trigger's value is the extension's ``ToolInvocationContext`` as JSON: ``{"name", "arguments",
  "sessionid", "clientinfo", "transport": {"name", "sessionId", "properties": {"headers": {...}}}}``, the
  ``headers`` being those of the HTTP request that carries the MCP session (names as the client sent them). It checks
  the required properties first (a missing one is a JSON-RPC error, ``InvalidParams``); types it does not check.
* **Out:** with ``useResultSchema`` the function returns the extension's ``McpToolResult`` envelope, ``{"type":
  "call_tool_result", "content": "<a CallToolResult as JSON>"}``, and the extension answers that ``CallToolResult``
  as is, ``isError`` included. A function that raises is answered ``isError`` with only "An error occurred invoking
  '<tool>'." (the MCP C# SDK's text): so the tools never raise, they answer errors themselves (``tool_result``).

The library's ``mcp_tool`` decorator cannot be used for that: it names the tool after the Python function, and it
returns a tool error only for a ``CallToolResult`` of the ``mcp`` SDK, a dependency the app does not take. Its
``mcp_tool_trigger`` declares the same trigger (what ``mcp_tool`` itself adds), with the properties given here.

Each tool's properties come from the request model of its HTTP twin (``properties_of``): the same names, JSON types
and required fields (``user_id`` aside: see ``properties_of``), so a field the model gains becomes a property too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

TRIGGER_ARG = "context"  # the name ``mcp_tool`` gives the trigger's parameter
USER_FIELD = "user_id"
# The extension's property types are JSON Schema types.
_SCALARS = {"string", "integer", "number", "boolean", "object"}


@dataclass(frozen=True)
class ToolProperty:
    """One property of a tool, as the trigger's ``toolProperties`` lists it (the extension's McpToolPropertyAttribute).

    ``enum``: the values a string may take (``enumValues``; extensions before 1.1 ignore it).
    """

    name: str
    type: str
    description: str
    required: bool = False
    array: bool = False
    enum: tuple[str, ...] = ()

    def binding(self) -> dict[str, Any]:
        """The property in the binding's JSON."""
        entry: dict[str, Any] = {
            "propertyName": self.name,
            "propertyType": self.type,
            "description": self.description,
            "isRequired": self.required,
            "isArray": self.array,
        }
        if self.enum:
            entry["enumValues"] = list(self.enum)
        return entry


def properties_of(model: type[BaseModel], descriptions: Mapping[str, str]) -> tuple[ToolProperty, ...]:
    """The tool properties of a request model: every field, its JSON type, whether it is required.

    ``descriptions`` overrides a field's own description, in words for a model choosing arguments. ``user_id`` is
    never required: with ``CALLER_IDENTITY=principal`` the user is the signed-in caller and a call leaves it out;
    otherwise a call without it is refused as the HTTP API refuses a body without it.

    Raises:
        ValueError: a field whose JSON Schema has no single type a tool property can take, or an override of a
            field the model does not have.
    """
    schema = model.model_json_schema()
    fields: dict[str, Any] = schema["properties"]
    unknown = set(descriptions) - set(fields)
    if unknown:
        raise ValueError(f"{model.__name__} has no field {sorted(unknown)}")
    required = set(schema.get("required", ())) - {USER_FIELD}
    definitions: dict[str, Any] = schema.get("$defs", {})
    properties = []
    for name, field in fields.items():
        kind, array, enum = _json_type(field, definitions, f"{model.__name__}.{name}")
        description = descriptions.get(name) or str(field.get("description", ""))
        properties.append(ToolProperty(name, kind, description, name in required, array, enum))
    return tuple(properties)


def _json_type(
    schema: Mapping[str, Any], definitions: Mapping[str, Any], where: str
) -> tuple[str, bool, tuple[str, ...]]:
    """(type, is an array, enum values) of a field's JSON Schema; ``null`` alternatives aside."""
    schema = _resolved(schema, definitions, where)
    if schema.get("type") == "array":
        item, _, enum = _json_type(schema.get("items", {}), definitions, f"{where}[]")
        return item, True, enum
    kind = schema.get("type")
    if kind not in _SCALARS:
        raise ValueError(f"{where}: no tool property type for {dict(schema)!r}; describe it in mcp_api.protocol")
    return str(kind), False, tuple(str(v) for v in schema.get("enum", ()))


def _resolved(schema: Mapping[str, Any], definitions: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """The schema without its ``$ref`` and its ``null`` alternative."""
    if "anyOf" in schema:
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"{where}: more than one type ({options!r}); a tool property has one")
        schema = options[0]
    reference = schema.get("$ref")
    if isinstance(reference, str):
        schema = definitions[reference.rsplit("/", 1)[-1]]
    return schema


def tool_properties_json(properties: tuple[ToolProperty, ...]) -> str:
    """The trigger's ``toolProperties``: a JSON list."""
    return json.dumps([p.binding() for p in properties])


@dataclass(frozen=True)
class ToolCall:
    """A tools/call as the trigger hands it over: the tool, its arguments, the HTTP headers of the MCP session."""

    name: str
    arguments: dict[str, Any]
    headers: dict[str, str]  # names in lower case

    @classmethod
    def parse(cls, context: str | bytes | Mapping[str, Any]) -> ToolCall:
        """The trigger's value (the extension's ToolInvocationContext, as JSON or already parsed)."""
        document = json.loads(context) if isinstance(context, str | bytes) else context
        if not isinstance(document, Mapping):
            raise ValueError("The MCP tool trigger's value is not a JSON object")
        arguments = _member(document, "arguments")
        transport = _member(document, "transport")
        properties = _member(transport, "properties") if isinstance(transport, Mapping) else None
        headers = _member(properties, "headers") if isinstance(properties, Mapping) else None
        return cls(
            name=str(_member(document, "name") or ""),
            arguments=dict(arguments) if isinstance(arguments, Mapping) else {},
            headers={str(k).lower(): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else {},
        )


def _member(document: Mapping[str, Any], name: str) -> Any:
    """A member of a JSON object, its name in any case (the extension reads them case-insensitively)."""
    if name in document:
        return document[name]
    return next((value for key, value in document.items() if str(key).lower() == name), None)


def tool_result(body: BaseModel, *, error: bool = False) -> str:
    """The McpToolResult envelope of a CallToolResult: ``body`` as structured content and as its JSON text.

    The text is the JSON the HTTP API answers (the error body for ``error``), as the MCP specification asks of a tool
    that returns structured content.
    """
    result = {
        "content": [{"type": "text", "text": body.model_dump_json()}],
        "structuredContent": body.model_dump(mode="json"),
        "isError": error,
    }
    return json.dumps({"type": "call_tool_result", "content": json.dumps(result)})


def service_url(headers: Mapping[str, str], route: str) -> str | None:
    """The absolute URL of one of this app's routes, on the host the MCP session's request came to.

    The scheme is ``X-Forwarded-Proto`` (App Service's front ends end TLS and say so in it), else http. None without a
    ``Host`` header (a transport the extension could not see).
    """
    host = headers.get("host")
    if not host:
        return None
    scheme = (headers.get("x-forwarded-proto") or "http").split(",")[0].strip().lower()
    return f"{scheme if scheme in ('http', 'https') else 'http'}://{host}/{route.lstrip('/')}"
