"""Who the user is: ``CALLER_IDENTITY=principal`` binds every memory route to App Service Authentication's principal.

Requests carry the headers App Service Authentication injects (``X-MS-CLIENT-PRINCIPAL-ID`` and the base64 claims of
``X-MS-CLIENT-PRINCIPAL``); the default mode (``request``) takes the user from the request, as before.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from http_api import openapi
from memory_core.service import MemoryService
from tests.functions.api_client import Api, Reply

pytestmark = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")

# Object ids, as Microsoft Entra ID gives them.
ALICE = "6f1c2a7e-3b8d-4c55-9e0a-1d2b3c4d5e6f"
BOB = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"

# Every memory route: (function name, method, its fields without user_id).
MEMORY_ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "start_session": ("POST", {"session_id": "s1", "restore": False}),
    "end_session": ("POST", {"session_id": "s1"}),
    "reflection_status": ("GET", {"session_id": "s1"}),
    "get_context": ("POST", {"session_id": "s1"}),
    "store_turn": ("POST", {"session_id": "s1", "user_message": "I live in Lisbon.", "agent_message": "Noted."}),
    "retrieve": ("POST", {"query": "Lisbon"}),
    "insights": ("POST", {}),
    "summaries": ("POST", {}),
}
FACTS = ["I live in Lisbon.", "I work as a nurse.", "I love hiking in the mountains."]


def client_principal(claims: list[dict[str, str]]) -> str:
    """An ``X-MS-CLIENT-PRINCIPAL`` header value: base64 JSON of the claims."""
    document = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(document).encode()).decode()


def principal(object_id: str) -> dict[str, str]:
    """The headers App Service Authentication injects for a Microsoft Entra ID principal."""
    return {
        "X-MS-CLIENT-PRINCIPAL-ID": object_id,
        "X-MS-CLIENT-PRINCIPAL-NAME": f"{object_id[:4]}@contoso.example",
        "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
        "X-MS-CLIENT-PRINCIPAL": client_principal(
            [{"typ": OBJECT_ID_CLAIM, "val": object_id}, {"typ": "name", "val": "Someone"}]
        ),
    }


async def call(api: Api, name: str, fields: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    method = MEMORY_ROUTES[name][0] if name in MEMORY_ROUTES else "POST"
    if method == "GET":
        return await api.get(name, fields, headers=headers)
    return await api.post(name, fields, headers=headers)


@pytest.fixture
def principal_mode(settings_env: Callable[..., None]) -> None:
    settings_env(CALLER_IDENTITY="principal")


@pytest.fixture
def bound_api(principal_mode: None, api: Api) -> Api:
    """The HTTP functions with CALLER_IDENTITY=principal, orchestrations left pending."""
    return api


@pytest.fixture
def bound_running_api(principal_mode: None, running_api: Api) -> Api:
    """The HTTP functions with CALLER_IDENTITY=principal, every orchestration run to its end."""
    return running_api


def assert_unauthenticated(reply: Reply) -> None:
    assert reply.status == 401, reply.body
    assert reply.body["error"] == "UnauthenticatedError" and reply.body["field"] is None
    assert set(reply.body) == {"error", "detail", "field"}
    assert reply.headers.get("WWW-Authenticate") == "Bearer"


def assert_forbidden(reply: Reply) -> None:
    assert reply.status == 403, reply.body
    assert reply.body["error"] == "ForbiddenError" and reply.body["field"] == "user_id"
    assert BOB not in reply.body["detail"] and ALICE not in reply.body["detail"]


# -- which routes are bound --------------------------------------------------------------------------------------


def test_the_memory_routes_are_the_function_level_routes(functions: dict[str, Any]) -> None:
    function_level = {
        name
        for name, fn in functions.items()
        if fn.get_trigger().type == "httpTrigger" and fn.get_trigger().auth_level.name == "FUNCTION"
    }
    assert function_level == set(MEMORY_ROUTES)
    bound = {e.path for e in openapi.ENDPOINTS if e.caller}
    assert bound == {"/" + functions[name].get_trigger().route for name in MEMORY_ROUTES}


# -- principal mode ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MEMORY_ROUTES))
async def test_a_memory_route_without_a_principal_is_401(bound_api: Api, name: str) -> None:
    fields = MEMORY_ROUTES[name][1]
    assert_unauthenticated(await call(bound_api, name, fields))
    assert_unauthenticated(await call(bound_api, name, {**fields, "user_id": ALICE}))
    # The principal is checked first: a request without one learns nothing about its body.
    assert_unauthenticated(await call(bound_api, name, {**fields, "unexpected": 1}))
    if MEMORY_ROUTES[name][0] == "POST":
        assert_unauthenticated(await bound_api.post(name, raw=b"{not json"))


@pytest.mark.parametrize("name", sorted(MEMORY_ROUTES))
async def test_a_memory_route_naming_another_user_is_403(bound_api: Api, name: str, service: MemoryService) -> None:
    fields = MEMORY_ROUTES[name][1]
    assert_forbidden(await call(bound_api, name, {**fields, "user_id": BOB}, principal(ALICE)))
    # Ids are compared exactly, as everywhere in the service.
    assert_forbidden(await call(bound_api, name, {**fields, "user_id": ALICE.upper()}, principal(ALICE)))
    assert await service.store.get_session(BOB, "s1") is None and await service.store.get_session(ALICE, "s1") is None


async def test_a_user_id_that_is_no_string_is_a_validation_error(bound_api: Api) -> None:
    reply = await call(bound_api, "retrieve", {"query": "Lisbon", "user_id": 5}, principal(ALICE))
    assert reply.status == 400 and reply.body["error"] == "ValidationError" and reply.body["field"] == "user_id"


async def test_a_request_without_user_id_is_the_principals(bound_running_api: Api, service: MemoryService) -> None:
    api, alice = bound_running_api, principal(ALICE)
    started = await api.post("start_session", {"session_id": "s1", "restore": False}, headers=alice)
    assert started.status == 200 and started.body["user_id"] == ALICE
    for n, fact in enumerate(FACTS, 1):
        stored = await api.post(
            "store_turn",
            {"session_id": "s1", "turn_id": f"t{n}", "user_message": fact, "agent_message": "Noted."},
            headers=alice,
        )
        assert stored.status == 201 and stored.body["user_id"] == ALICE
    context = await api.post("get_context", {"session_id": "s1"}, headers=alice)
    assert context.status == 200 and context.body["user_id"] == ALICE and context.body["turn_count"] == 3
    found = await api.post("retrieve", {"query": "Where does the user live? Lisbon"}, headers=alice)
    assert found.status == 200 and any("Lisbon" in fact for fact in found.body["facts"])
    ended = await api.post("end_session", {"session_id": "s1"}, headers=alice)
    assert ended.status == 202 and ended.body["user_id"] == ALICE
    # The status URL names the principal's id, which the principal may follow.
    assert ended.body["statusQueryGetUri"].endswith(f"/sessions/reflection?user_id={ALICE}&session_id=s1")
    status = await api.get("reflection_status", {"session_id": "s1"}, headers=alice)
    assert status.status == 200 and status.body["runtimeStatus"] == "Completed"
    assert (await api.get("reflection_status", {"user_id": ALICE, "session_id": "s1"}, headers=alice)).status == 200
    insights = await api.post("insights", {}, headers=alice)
    assert insights.status == 200 and insights.body["user_id"] == ALICE and insights.body["count"] > 0
    summaries = await api.post("summaries", {"limit": 5}, headers=alice)
    assert summaries.status == 200 and summaries.body["user_id"] == ALICE and summaries.body["count"] == 1
    record = await service.store.get_session(ALICE, "s1")
    assert record is not None and record.turn_count == 3


async def test_the_principals_own_id_in_the_request_is_accepted(bound_api: Api) -> None:
    alice = principal(ALICE)
    for name in ("start_session", "store_turn", "get_context", "retrieve", "insights", "summaries", "end_session"):
        reply = await call(bound_api, name, {**MEMORY_ROUTES[name][1], "user_id": ALICE}, alice)
        assert reply.status in (200, 201, 202), (name, reply.body)
        assert reply.body.get("user_id", ALICE) == ALICE
    status = await call(bound_api, "reflection_status", {"session_id": "s1", "user_id": ALICE}, alice)
    assert status.status == 202 and status.body["runtimeStatus"] == "Pending"


async def test_one_principal_cannot_read_anothers_memory(bound_running_api: Api) -> None:
    api, alice, bob = bound_running_api, principal(ALICE), principal(BOB)
    assert (await api.post("start_session", {"session_id": "s1", "restore": False}, headers=alice)).status == 200
    for fact in FACTS:
        turn = {"session_id": "s1", "user_message": fact, "agent_message": "Noted."}
        assert (await api.post("store_turn", turn, headers=alice)).status == 201
    assert (await api.post("end_session", {"session_id": "s1"}, headers=alice)).status == 202

    # Bob naming Alice is refused everywhere; Bob's own memory is empty.
    for name in MEMORY_ROUTES:
        assert_forbidden(await call(api, name, {**MEMORY_ROUTES[name][1], "user_id": ALICE}, bob))
    found = await api.post("retrieve", {"query": "Where does the user live? Lisbon"}, headers=bob)
    assert found.status == 200 and found.body["count"] == 0
    assert (await api.post("insights", {}, headers=bob)).body["count"] == 0
    assert (await api.post("summaries", {}, headers=bob)).body["count"] == 0
    reflection = await api.get("reflection_status", {"session_id": "s1"}, headers=bob)
    assert reflection.status == 404 and reflection.body["field"] == "session_id"
    # Alice's session id under Bob is another session (Bob's own), with none of Alice's turns.
    context = await api.post("get_context", {"session_id": "s1"}, headers=bob)
    assert context.status == 404 or (context.body["user_id"] == BOB and context.body["turn_count"] == 0)
    assert "Lisbon" not in json.dumps(context.body)


async def test_the_object_id_claim_alone_identifies_the_principal(bound_api: Api) -> None:
    headers = {"X-MS-CLIENT-PRINCIPAL": client_principal([{"typ": "oid", "val": ALICE}])}
    reply = await bound_api.post("start_session", {"session_id": "s1"}, headers=headers)
    assert reply.status == 200 and reply.body["user_id"] == ALICE


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.example"}, id="a name is no id"),
        pytest.param({"Authorization": f"Bearer devhost-principal:{ALICE}"}, id="the local stand-in's token"),
        pytest.param({"X-MS-CLIENT-PRINCIPAL-ID": "  "}, id="blank id"),
        pytest.param({"X-MS-CLIENT-PRINCIPAL-ID": "a" * 257}, id="id too long"),
        pytest.param({"X-MS-CLIENT-PRINCIPAL-ID": "a\x7fb"}, id="control character"),
        pytest.param({**principal(ALICE), "X-MS-CLIENT-PRINCIPAL-ID": BOB}, id="headers that disagree"),
        pytest.param({**principal(ALICE), "X-MS-CLIENT-PRINCIPAL": "%%% not base64"}, id="claims not base64"),
        pytest.param({**principal(ALICE), "X-MS-CLIENT-PRINCIPAL": "WzEsIDJd"}, id="claims not an object"),
        pytest.param({"X-MS-CLIENT-PRINCIPAL": client_principal([{"typ": "name", "val": "x"}])}, id="no object id"),
    ],
)
async def test_a_principal_the_headers_do_not_establish_is_401(bound_api: Api, headers: dict[str, str]) -> None:
    assert_unauthenticated(await bound_api.post("start_session", {"session_id": "s1"}, headers=headers))


async def test_admin_routes_take_any_user_without_a_principal(bound_running_api: Api) -> None:
    api = bound_running_api
    assert (await api.post("start_session", {"session_id": "s1"}, headers=principal(ALICE))).status == 200
    for headers in (None, principal(BOB)):
        assert (await api.get("stats", headers=headers)).status == 200
        exported = await api.get("export_user", headers=headers, user_id=ALICE)
        assert exported.status == 200 and [s["session_id"] for s in exported.body["sessions"]] == ["s1"]
        by_query = await api.get("export_user_by_query", {"user_id": ALICE}, headers=headers)
        assert by_query.status == 200 and by_query.body["user_id"] == ALICE
    forgotten = await api.delete("forget_user_by_query", {"user_id": ALICE}, headers=principal(BOB))
    assert forgotten.status == 200 and forgotten.body["sessions"] == 1 and forgotten.body["complete"] is True
    assert (await api.delete("forget_user", user_id=BOB)).status == 200
    assert (await api.get("health")).status == 200


async def test_the_document_says_who_the_user_is_in_principal_mode(principal_mode: None, functions: dict[str, Any]):
    doc = (await Api(functions, None).get("openapi")).body
    assert set(doc["components"]["securitySchemes"]["easyAuth"].items()) >= {("type", "http"), ("scheme", "bearer")}
    for endpoint in openapi.ENDPOINTS:
        operation = doc["paths"][endpoint.path][endpoint.method]
        if not endpoint.caller:
            assert "403" not in operation["responses"]
            assert all("easyAuth" not in alternative for alternative in operation["security"])
            continue
        assert {"401", "403"} <= set(operation["responses"])
        assert "principal" in operation["responses"]["401"]["description"]
        assert operation["security"] and all("easyAuth" in alternative for alternative in operation["security"])
        if endpoint.request is not None:
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
            assert "user_id" not in schema.get("required", []) and "user_id" in schema["properties"]
            assert "principal" in schema["properties"]["user_id"]["description"]
        else:
            (user,) = [p for p in operation["parameters"] if p["name"] == "user_id"]
            assert user["required"] is False and "principal" in user["description"]
    # The admin routes' user is still required.
    (user,) = [p for p in doc["paths"]["/users"]["get"]["parameters"] if p["name"] == "user_id"]
    assert user["required"] is True


# -- request mode (the default) ----------------------------------------------------------------------------------


async def test_request_mode_takes_the_user_from_the_request_whatever_the_headers(
    api: Api, functions: dict[str, Any]
) -> None:
    reply = await api.post("start_session", {"user_id": BOB, "session_id": "s1"}, headers=principal(ALICE))
    assert reply.status == 200 and reply.body["user_id"] == BOB
    missing = await api.post("retrieve", {"query": "Lisbon"}, headers=principal(ALICE))
    assert missing.status == 400 and missing.body["field"] == "user_id"
    doc = (await Api(functions, None).get("openapi")).body
    assert "easyAuth" not in doc["components"]["securitySchemes"]
    assert all("403" not in op["responses"] for operations in doc["paths"].values() for op in operations.values())
    assert "user_id" in doc["components"]["schemas"]["ContextRequest"]["required"]
