"""Over HTTP, behind the local Easy Auth stand-in (``run_server.py --easy-auth``, so ``CALLER_IDENTITY=principal``):
one principal cannot read another's memory, and principal headers a client sends are ignored."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.e2e.helpers import follow
from tests.support.service import MemoryServiceProcess

pytestmark = pytest.mark.e2e

FACTS = [
    "I live in Zanzibar.",
    "I work as a lighthouse keeper.",
    "I collect antique barometers.",
    "My favourite dish is pilau.",
]


def sign_in(principal: str) -> dict[str, str]:
    """What a request sends to sign in as ``principal`` behind the local stand-in."""
    return {"Authorization": f"Bearer devhost-principal:{principal}"}


def forged(principal: str) -> dict[str, str]:
    """The headers App Service Authentication would inject for ``principal``, sent by a client instead."""
    claims = {"claims": [{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": principal}]}
    return {
        "X-MS-CLIENT-PRINCIPAL-ID": principal,
        "X-MS-CLIENT-PRINCIPAL-NAME": "victim@contoso.example",
        "X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(claims).encode()).decode(),
    }


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryServiceProcess]:
    settings = {"REFLECTION_THRESHOLD_TURNS": "3"}
    with MemoryServiceProcess(tmp_path_factory.mktemp("e2e-easy-auth"), settings, easy_auth=True) as running:
        yield running


@pytest.fixture
async def http(service: MemoryServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=30) as client:
        yield client


def refused(response: httpx.Response, status: int, error: str, field: str | None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail", "field"} and (body["error"], body["field"]) == (error, field)


async def test_a_principal_cannot_read_another_principals_memory(
    service: MemoryServiceProcess, http: httpx.AsyncClient
) -> None:
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())
    as_alice, as_bob = sign_in(alice), sign_in(bob)

    # Bob's memory: a session with four facts, ended and reflected. No request names a user: the principal is it.
    started = await http.post("/sessions/start", json={"session_id": "bob-1", "restore": False}, headers=as_bob)
    assert started.status_code == 200 and started.json()["user_id"] == bob, started.text
    for fact in FACTS:
        turn = {"session_id": "bob-1", "user_message": fact, "agent_message": "Noted."}
        assert (await http.post("/memory/store", json=turn, headers=as_bob)).status_code == 201
    ended = await http.post("/sessions/end", json={"session_id": "bob-1"}, headers=as_bob)
    assert ended.status_code == 202, ended.text
    status_uri = service.url(ended.json()["statusQueryGetUri"])
    async with httpx.AsyncClient(timeout=30, headers=as_bob) as bobs:
        assert (await follow(bobs, status_uri, within=60))["runtimeStatus"] == "Completed"
    query = {"query": "Where does the user live? Zanzibar"}
    bobs_own = {
        "retrieve": (await http.post("/memory/retrieve", json=query, headers=as_bob)).json(),
        "insights": (await http.post("/insights", json={}, headers=as_bob)).json(),
        "summaries": (await http.post("/summaries", json={}, headers=as_bob)).json(),
    }
    assert any("Zanzibar" in fact for fact in bobs_own["retrieve"]["facts"])
    assert bobs_own["insights"]["count"] > 0 and bobs_own["summaries"]["count"] == 1

    # Alice naming Bob is refused on every route that reads memory, Bob's own status URL included.
    reads = [
        ("POST", "/memory/context", {"user_id": bob, "session_id": "bob-1"}),
        ("POST", "/memory/retrieve", {"user_id": bob, **query}),
        ("POST", "/insights", {"user_id": bob}),
        ("POST", "/summaries", {"user_id": bob}),
        ("GET", "/sessions/reflection", {"user_id": bob, "session_id": "bob-1"}),
        ("GET", status_uri, None),
    ]
    for method, path, fields in reads:
        if method == "GET":
            response = await http.get(path, params=fields, headers=as_alice)
        else:
            response = await http.post(path, json=fields, headers=as_alice)
        refused(response, 403, "ForbiddenError", "user_id")
        assert "Zanzibar" not in response.text

    # Without a user id, Alice gets her own memory, which holds nothing of Bob's.
    found = await http.post("/memory/retrieve", json=query, headers=as_alice)
    assert found.status_code == 200 and found.json()["count"] == 0
    assert (await http.post("/insights", json={}, headers=as_alice)).json() == {
        "user_id": alice,
        "insights": [],
        "count": 0,
        "items": [],
    }
    assert (await http.post("/summaries", json={}, headers=as_alice)).json()["count"] == 0
    refused(
        await http.post("/memory/context", json={"session_id": "bob-1"}, headers=as_alice),
        404,
        "SessionNotFoundError",
        "session_id",
    )
    refused(
        await http.get("/sessions/reflection", params={"session_id": "bob-1"}, headers=as_alice),
        404,
        "NotFoundError",
        "session_id",
    )

    # Principal headers a client sends are dropped: Alice claiming to be Bob is still Alice ...
    as_alice_claiming_bob = {**as_alice, **forged(bob)}
    found = await http.post("/memory/retrieve", json=query, headers=as_alice_claiming_bob)
    assert found.status_code == 200 and found.json()["count"] == 0 and found.json()["items"] == []
    insights = await http.post("/insights", json={}, headers=as_alice_claiming_bob)
    assert insights.json()["user_id"] == alice and insights.json()["count"] == 0
    refused(
        await http.post("/summaries", json={"user_id": bob}, headers=as_alice_claiming_bob),
        403,
        "ForbiddenError",
        "user_id",
    )
    # ... and without a token, forged headers are no principal at all.
    for path in ("/memory/retrieve", "/insights", "/summaries"):
        response = await http.post(path, json=query if path == "/memory/retrieve" else {}, headers=forged(bob))
        refused(response, 401, "UnauthenticatedError", None)
    refused(await http.get(status_uri, headers=forged(bob)), 401, "UnauthenticatedError", None)

    # The admin routes still take any user id (keys are off locally: no master key needed here).
    exported = await http.get(f"/users/{bob}/export")
    assert exported.status_code == 200 and [t["user_message"] for t in exported.json()["turns"]] == FACTS


async def test_the_running_service_documents_principal_mode(
    service: MemoryServiceProcess, http: httpx.AsyncClient
) -> None:
    banner = service.output()
    assert "Users: the signed-in principal (CALLER_IDENTITY=principal" in banner
    assert "Easy Auth stand-in (--easy-auth)" in banner
    document = (await http.get("/openapi.json")).json()
    assert "easyAuth" in document["components"]["securitySchemes"]
    context = document["paths"]["/memory/context"]["post"]
    assert {"401", "403"} <= set(context["responses"])
    assert "user_id" not in document["components"]["schemas"]["ContextRequest"]["required"]
