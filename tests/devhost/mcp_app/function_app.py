"""MCP tool triggers for the devhost tests, declared both ways the library offers.

``mcp_tool`` (with ``mcp_tool_property``) infers the tool from the Python function and returns text;
``mcp_tool_trigger`` declares the trigger itself, and its function returns the extension's McpToolResult envelope
(``useResultSchema``). No ``from __future__ import annotations`` here: ``mcp_tool`` reads the real annotations.
"""

import json

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.mcp_tool()
@app.mcp_tool_property(arg_name="message", description="What to echo.")
@app.mcp_tool_property(
    arg_name="times", description="How often.", property_type=func.McpPropertyType.INTEGER, is_required=False
)
def echo(message: str, times: int = 1) -> str:
    """Echo a message."""
    return " ".join([message] * int(times))


@app.mcp_tool()
def whoami(call: func.MCPToolContext) -> str:
    """The invocation context this tool received."""
    return json.dumps(call)


@app.mcp_tool()
def explode() -> str:
    """Always raises."""
    raise RuntimeError("boom: a detail the client must not see")


KINDS = [
    {
        "propertyName": "kinds",
        "propertyType": "string",
        "description": "Which kinds.",
        "isArray": True,
        "isRequired": False,
        "enumValues": ["a", "b"],
    },
]


@app.mcp_tool_trigger(
    arg_name="context",
    tool_name="refuse",
    description="Always a tool error of its own.",
    tool_properties=json.dumps(KINDS),
    use_result_schema=True,
)
def refuse(context: str) -> str:
    result = {"content": [{"type": "text", "text": "refused"}], "structuredContent": {"why": "test"}, "isError": True}
    return json.dumps({"type": "call_tool_result", "content": json.dumps(result)})


@app.mcp_tool_trigger(arg_name="context", tool_name="rich", description="Text and structure.", use_result_schema=True)
def rich(context: str) -> str:
    block = {"type": "text", "text": "hi"}
    return json.dumps(
        {"type": "text", "content": json.dumps(block), "structuredContent": json.dumps({"greeting": "hi"})}
    )


@app.mcp_tool_trigger(arg_name="context", tool_name="garbled", description="Not an envelope.", use_result_schema=True)
def garbled(context: str) -> str:
    return "this is no McpToolResult"
