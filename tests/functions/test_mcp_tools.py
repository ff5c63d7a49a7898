"""The MCP tools (``mcp_api``) through their real entry points: indexing, the trigger's value in, the envelope out.

Each tool gets the invocation context JSON the Functions MCP extension hands a tool trigger, and answers the
extension's ``McpToolResult`` envelope; the tests read the ``CallToolResult`` out of it as the extension does. Every
tool is checked against its HTTP twin: the same properties as the twin's request model, the same body as its result,
the same error body as a tool error.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from memory_core.models import (
    EndSessionRequest,
    InsightsRequest,
    ReflectionStatusRequest,
    RetrieveRequest,
    StartSessionRequest,
    StoreTurnRequest,
    SummariesRequest,
    UserQuery,
)
from tests.functions.api_client import Api, Reply
from tests.functions.taskhub import TaskHub
from tests.functions.test_caller_identity import ALICE, BOB, principal

pytestmark = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")

# function name: (tool name, request model of the HTTP twin, the HTTP twin's function, has a durable client)
TOOLS: dict[str, tuple[str, type[BaseModel], str, bool]] = {
    "mcp_get_memory_context": ("get_memory_context", StartSessionRequest, "start_session", False),
    "mcp_store_turn": ("store_turn", StoreTurnRequest, "store_turn", True),
    "mcp_search_memory": ("search_memory", RetrieveRequest, "retrieve", False),
    "mcp_list_insights": ("list_insights", InsightsRequest, "insights", False),
    "mcp_list_session_summaries": ("list_session_summaries", SummariesRequest, "summaries", False),
    "mcp_end_session": ("end_session", EndSessionRequest, "end_session", True),
    "mcp_get_reflection_status": ("get_reflection_status", ReflectionStatusRequest, "reflection_status", True),
    "mcp_forget_user": ("forget_user", UserQuery, "forget_user_by_query", True),
}
FUNCTION_OF = {tool: name for name, (tool, *_) in TOOLS.items()}
JSON_TYPES = {"string", "integer", "number", "boolean", "object"}
USER = "alice"
HEADERS = {"Host": "memory.example.net", "X-Forwarded-Proto": "https", "Mcp-Session-Id": "state"}
FACTS = [
    ("I live in Lisbon.", "Lisbon is lovely."),
    ("I work as a nurse.", "That is demanding work."),
    ("I love hiking in the mountains.", "Great exercise."),
    ("What is a 401k?", "A retirement savings plan."),
]


@dataclass
class ToolReply:
    """A CallToolResult, as the extension reads it from the envelope."""

    is_error: bool
    structured: Any
    text: str


def context_json(tool: str, arguments: dict[str, Any] | None, headers: dict[str, str] | None = None) -> str:
    """The extension's ToolInvocationContext, as the trigger's value carries it."""
    document: dict[str, Any] = {"name": tool, "sessionid": "state", "clientinfo": {"name": "test", "version": "1"}}
    if arguments is not None:
        document["arguments"] = arguments
    document["transport"] = {"name": "http-streamable", "properties": {"headers": {**HEADERS, **(headers or {})}}}
    return json.dumps(document)


def read_envelope(returned: str) -> ToolReply:
    envelope = json.loads(returned)
    assert envelope["type"] == "call_tool_result"
    result = json.loads(envelope["content"])
    assert set(result) == {"content", "structuredContent", "isError"}
    [block] = result["content"]
    assert block["type"] == "text" and json.loads(block["text"]) == result["structuredContent"]
    return ToolReply(result["isError"], result["structuredContent"], block["text"])


class Tools:
    """The MCP tool functions by tool name; those with a durable client get the task hub's.

    On a running task hub a call returns once the background work it started has run to its end.
    """

    def __init__(self, functions: dict[str, Any], hub: TaskHub) -> None:
        self.functions = functions
        self.hub = hub

    async def call(
        self, tool: str, arguments: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> ToolReply:
        fn = self.functions[FUNCTION_OF[tool]].get_user_function()
        context = context_json(tool, arguments if arguments is not None else {}, headers)
        client_function = getattr(fn, "client_function", None)
        if client_function is not None:
            returned = await self.hub.call(client_function, context=context)
        else:
            returned = fn(context=context)
            if inspect.isawaitable(returned):
                returned = await returned
        assert isinstance(returned, str)
        return read_envelope(returned)

    async def ok(self, tool: str, arguments: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        reply = await self.call(tool, arguments, headers)
        assert not reply.is_error, reply.structured
        return reply.structured


@pytest.fixture
def tools(functions: dict[str, Any], hub: TaskHub) -> Tools:
    return Tools(functions, hub)


@pytest.fixture
def running_tools(functions: dict[str, Any], running_hub: TaskHub) -> Tools:
    return Tools(functions, running_hub)


def trigger_binding(fn: Any) -> dict[str, Any]:
    raw = [json.loads(b) for b in fn.get_raw_bindings()]
    return next(b for b in raw if b["type"] == "mcpToolTrigger")


# -- indexing ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_each_tool_is_an_mcp_tool_trigger_with_its_name_and_the_fields_of_its_twin(
    functions: dict[str, Any], name: str
) -> None:
    tool_name, model, _, has_client = TOOLS[name]
    fn = functions[name]
    assert fn.get_trigger().type == "mcpToolTrigger"
    binding = trigger_binding(fn)
    assert binding["name"] == "context" and binding["direction"] == "IN"
    assert binding["toolName"] == tool_name and binding["useResultSchema"] is True
    assert len(binding["description"]) > 60
    expected = ["durableClient", "mcpToolTrigger"] if has_client else ["mcpToolTrigger"]
    assert sorted(b.type for b in fn.get_bindings()) == expected
    properties = json.loads(binding["toolProperties"])
    schema = model.model_json_schema()
    assert [p["propertyName"] for p in properties] == list(schema["properties"])
    for prop in properties:
        assert set(prop) <= {"propertyName", "propertyType", "description", "isRequired", "isArray", "enumValues"}
        assert prop["propertyType"] in JSON_TYPES and prop["description"], prop
        required = prop["propertyName"] in schema.get("required", ()) and prop["propertyName"] != "user_id"
        assert prop["isRequired"] is required, prop


def test_the_tools_and_their_properties(functions: dict[str, Any]) -> None:
    """What a model sees of each tool: name, properties with their JSON types, the required ones starred."""
    listing = {}
    for name in TOOLS:
        binding = trigger_binding(functions[name])
        listing[binding["toolName"]] = [
            p["propertyName"]
            + ("*" if p["isRequired"] else "")
            + ":"
            + p["propertyType"]
            + ("[]" if p["isArray"] else "")
            for p in json.loads(binding["toolProperties"])
        ]
    assert listing.pop("search_memory")[:4] == ["user_id:string", "session_id:string", "query*:string", "top_k:integer"]
    assert listing == {
        "get_memory_context": ["user_id:string", "session_id:string", "restore:boolean"],
        "store_turn": [
            "user_id:string",
            "session_id*:string",
            "user_message*:string",
            "agent_message*:string",
            "turn_id:string",
            "timestamp:string",
            "metadata:object",
        ],
        "list_insights": ["user_id:string", "recent_only:boolean", "include_superseded:boolean", "limit:integer"],
        "list_session_summaries": ["user_id:string", "limit:integer"],
        "end_session": ["user_id:string", "session_id*:string"],
        "get_reflection_status": ["user_id:string", "session_id*:string"],
        "forget_user": ["user_id:string"],
    }


def test_search_memory_takes_every_filter_of_the_retrieve_request(functions: dict[str, Any]) -> None:
    properties = json.loads(trigger_binding(functions["mcp_search_memory"])["toolProperties"])
    assert [p["propertyName"] for p in properties] == list(RetrieveRequest.model_fields)
    kinds = next((p for p in properties if p["propertyName"] == "kinds"), None)
    if kinds is not None:  # a list of an enum: an array of strings with its values
        assert kinds["isArray"] is True and kinds["propertyType"] == "string" and "insight" in kinds["enumValues"]


def test_properties_of_refuses_a_field_without_one_json_type() -> None:
    from mcp_api.protocol import properties_of

    class Odd(BaseModel):
        value: int | str

    with pytest.raises(ValueError, match="more than one type"):
        properties_of(Odd, {})
    with pytest.raises(ValueError, match="no field"):
        properties_of(StartSessionRequest, {"nonsense": "x"})


# -- the guide's flow through the tools ----------------------------------------------------------------------------


async def test_the_guide_flow_through_the_tools(running_tools: Tools) -> None:
    started = await running_tools.ok("get_memory_context", {"user_id": USER})
    session = started["session_id"]
    assert started["restored"] is False and started["turn_count"] == 0
    for i, (user_message, agent_message) in enumerate(FACTS, 1):
        stored = await running_tools.ok(
            "store_turn",
            {
                "user_id": USER,
                "session_id": session,
                "turn_id": f"t{i}",
                "user_message": user_message,
                "agent_message": agent_message,
            },
        )
        assert stored == {
            "status": "stored",
            "user_id": USER,
            "session_id": session,
            "turn_id": f"t{i}",
            "seq": i,
            "duplicate": False,
        }
    context = await running_tools.ok("get_memory_context", {"user_id": USER, "session_id": session})
    assert context["turn_count"] == len(FACTS) and context["session_id"] == session
    found = await running_tools.ok("search_memory", {"user_id": USER, "query": "Where does the user live?"})
    assert any("Lisbon" in fact for fact in found["facts"])

    ended = await running_tools.ok("end_session", {"user_id": USER, "session_id": session})
    assert ended["status"] == "reflecting"
    # The service's own route, on the host the MCP session came to: no Durable URL, no system key.
    assert ended["statusQueryGetUri"] == (
        f"https://memory.example.net/sessions/reflection?user_id={USER}&session_id={session}"
    )
    status = await running_tools.ok("get_reflection_status", {"user_id": USER, "session_id": session})
    assert status["runtimeStatus"] == "Completed" and status["output"]["summary"]

    insights = await running_tools.ok("list_insights", {"user_id": USER})
    assert any("Lisbon" in text for text in insights["insights"])
    summaries = await running_tools.ok("list_session_summaries", {"user_id": USER})
    assert [item["session_id"] for item in summaries["items"]] == [session]
    later = await running_tools.ok("get_memory_context", {"user_id": USER})
    assert later["session_id"] != session and any("Lisbon" in text for text in later["insights"])
    assert "Lisbon" in later["formatted_context"]


async def test_the_status_url_needs_the_host_header(tools: Tools) -> None:
    await tools.ok("get_memory_context", {"user_id": USER, "session_id": "s1"})
    headers = {"Host": "localhost:7071", "X-Forwarded-Proto": ""}
    ended = await tools.ok("end_session", {"user_id": USER, "session_id": "s1"}, headers)
    assert ended["statusQueryGetUri"] == "http://localhost:7071/sessions/reflection?user_id=alice&session_id=s1"
    fn = tools.functions["mcp_end_session"].get_user_function().client_function
    bare = json.dumps({"name": "end_session", "arguments": {"user_id": USER, "session_id": "s1"}})
    reply = read_envelope(await fn(context=bare, client=tools.hub.client))  # a transport the extension could not see
    assert not reply.is_error and reply.structured["statusQueryGetUri"] is None


# -- errors: the HTTP API's, as tool errors --------------------------------------------------------------------------

ERROR_CASES: list[tuple[str, dict[str, Any]]] = [
    ("store_turn", {"user_id": USER, "session_id": "s1", "user_message": " ", "agent_message": "x"}),
    ("store_turn", {"user_id": USER, "session_id": "missing", "user_message": "hi", "agent_message": "x"}),
    ("store_turn", {"user_id": USER, "session_id": "s1", "user_message": "hi", "agent_message": "x", "extra": 1}),
    ("search_memory", {"user_id": USER, "query": "x", "top_k": 10_000}),
    ("search_memory", {"user_id": USER, "query": "x", "top_k": "5"}),
    ("search_memory", {"query": "x"}),
    ("get_memory_context", {"user_id": USER, "session_id": "s1", "restore": False}),
    ("list_insights", {"user_id": USER, "limit": 0}),
    ("get_reflection_status", {"user_id": USER, "session_id": "never-ended"}),
    ("end_session", {"user_id": USER, "session_id": "missing"}),
]


async def twin_reply(api: Api, tool: str, arguments: dict[str, Any]) -> Reply:
    twin = TOOLS[FUNCTION_OF[tool]][2]
    if twin == "reflection_status":
        return await api.get(twin, arguments)
    return await api.post(twin, arguments)


@pytest.mark.parametrize(("tool", "arguments"), ERROR_CASES, ids=lambda v: v if isinstance(v, str) else "")
async def test_an_error_is_a_tool_error_with_the_http_apis_body(
    tools: Tools, api: Api, tool: str, arguments: dict[str, Any]
) -> None:
    await tools.ok("get_memory_context", {"user_id": USER, "session_id": "s1"})
    http = await twin_reply(api, tool, arguments)
    assert 400 <= http.status < 500, http.body
    reply = await tools.call(tool, arguments)
    assert reply.is_error is True
    assert reply.structured == http.body and reply.text == http.text


async def test_a_turn_for_an_ended_session_is_the_same_conflict(tools: Tools, api: Api) -> None:
    await tools.ok("get_memory_context", {"user_id": USER, "session_id": "s1"})
    await tools.ok("end_session", {"user_id": USER, "session_id": "s1"})
    turn = {"user_id": USER, "session_id": "s1", "user_message": "hi", "agent_message": "hello"}
    http = await api.post("store_turn", turn)
    reply = await tools.call("store_turn", turn)
    assert http.status == 409 and reply.is_error and reply.structured == http.body


async def test_an_unavailable_service_is_the_same_503_body(
    functions: dict[str, Any], settings_env: Callable[..., None], durable_settings: None, hub_dir: Path
) -> None:
    settings_env(K_TURN_BUFFER="0")  # a bad setting: the service cannot start
    async with TaskHub.started(hub_dir, running=False) as hub:
        reply = await Tools(functions, hub).call("list_insights", {"user_id": USER})
    http = await Api(functions, None).post("insights", {"user_id": USER})
    assert http.status == 503 and reply.is_error
    assert reply.structured == http.body and reply.structured["error"] == "ServiceUnavailable"


async def test_a_context_that_is_not_json_raises_and_the_extension_answers_a_generic_tool_error(tools: Tools) -> None:
    fn = tools.functions["mcp_list_insights"].get_user_function()
    with pytest.raises(ValueError):
        await fn(context="not json")


# -- who the user is -------------------------------------------------------------------------------------------------


@pytest.fixture
def principal_mode(settings_env: Callable[..., None]) -> None:
    settings_env(CALLER_IDENTITY="principal")


async def test_with_principal_mode_the_user_is_the_signed_in_caller(principal_mode: None, tools: Tools) -> None:
    alice = principal(ALICE)
    started = await tools.ok("get_memory_context", {}, alice)
    assert started["user_id"] == ALICE
    same = await tools.ok("get_memory_context", {"user_id": ALICE, "session_id": started["session_id"]}, alice)
    assert same["session_id"] == started["session_id"]
    # Header names as the client wrote them: the extension keeps their case, the tools read any.
    lowered = await tools.ok("list_insights", {}, {k.lower(): v for k, v in alice.items()})
    assert lowered["user_id"] == ALICE

    other = await tools.call("list_insights", {"user_id": BOB}, alice)
    assert other.is_error and other.structured["error"] == "ForbiddenError" and other.structured["field"] == "user_id"
    anonymous = await tools.call("list_insights", {"user_id": ALICE})
    assert anonymous.is_error and anonymous.structured["error"] == "UnauthenticatedError"


async def test_in_request_mode_principal_headers_are_ignored(tools: Tools) -> None:
    reply = await tools.call("list_insights", {}, principal(ALICE))
    assert reply.is_error and reply.structured["error"] == "ValidationError" and reply.structured["field"] == "user_id"


# -- forgetting ------------------------------------------------------------------------------------------------------


async def test_forget_is_refused_unless_the_administrator_enabled_it(tools: Tools) -> None:
    await tools.ok("get_memory_context", {"user_id": USER, "session_id": "s1"})
    reply = await tools.call("forget_user", {"user_id": USER})
    assert reply.is_error and reply.structured["error"] == "ForbiddenError"
    assert "MCP_ALLOW_FORGET" in reply.structured["detail"]
    kept = await tools.ok("get_memory_context", {"user_id": USER, "session_id": "s1"})
    assert kept["restored"] is False and kept["session_id"] == "s1"


@pytest.fixture
def forget_enabled(settings_env: Callable[..., None]) -> None:
    settings_env(MCP_ALLOW_FORGET="true")  # before the service is built: it keeps its settings


async def test_an_enabled_forget_deletes_the_user_and_answers_the_receipt(
    forget_enabled: None, running_tools: Tools
) -> None:
    await running_tools.ok("get_memory_context", {"user_id": USER, "session_id": "s1"})
    await running_tools.ok(
        "store_turn", {"user_id": USER, "session_id": "s1", "user_message": "I live in Lisbon.", "agent_message": "ok"}
    )
    receipt = await running_tools.ok("forget_user", {"user_id": USER})
    assert receipt["user_id"] == USER and receipt["sessions"] == 1 and receipt["turns"] == 1
    assert receipt["complete"] is True
    found = await running_tools.ok("search_memory", {"user_id": USER, "query": "Lisbon"})
    assert found["count"] == 0


async def test_in_principal_mode_a_caller_forgets_only_themselves(
    principal_mode: None, forget_enabled: None, running_tools: Tools
) -> None:
    other = await running_tools.call("forget_user", {"user_id": BOB}, principal(ALICE))
    assert other.is_error and other.structured["error"] == "ForbiddenError" and other.structured["field"] == "user_id"
    mine = await running_tools.ok("forget_user", {}, principal(ALICE))
    assert mine["user_id"] == ALICE and mine["complete"] is True
