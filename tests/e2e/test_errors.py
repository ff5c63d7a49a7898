"""Errors over HTTP: every one a JSON body ``{"error", "detail", "field"}`` with the README's status."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.e2e.helpers import context, follow, start, store, unique
from tests.support.service import MemoryServiceProcess

pytestmark = pytest.mark.e2e


def error_of(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail", "field"}
    return body


async def test_unknown_session_is_404_session_not_found(client: httpx.AsyncClient):
    user = unique("nobody")
    requests = [
        ("/memory/context", {"user_id": user, "session_id": "no-such-session"}),
        ("/sessions/end", {"user_id": user, "session_id": "no-such-session"}),
        (
            "/memory/store",
            {"user_id": user, "session_id": "no-such-session", "user_message": "Hi", "agent_message": "Hello"},
        ),
    ]
    for path, body in requests:
        error = error_of(await client.post(path, json=body), 404)
        assert error == {"error": "SessionNotFoundError", "detail": "Session not found", "field": "session_id"}, path


async def test_ended_session_refuses_turns_with_409_and_is_not_found_afterwards(
    client: httpx.AsyncClient, shared_service: MemoryServiceProcess
):
    user = unique("ender")
    session_id = (await start(client, user))["session_id"]
    assert (await store(client, user, session_id, "t1", "I live in Lisbon.", "Lisbon is sunny.")).status_code == 201
    response = await client.post("/sessions/end", json={"user_id": user, "session_id": session_id})
    assert response.status_code == 202, response.text
    status_uri = shared_service.url(response.json()["statusQueryGetUri"])

    # Refused at once, while reflection runs and after it is done; a retry of a stored turn is still that turn.
    error = error_of(await store(client, user, session_id, "t2", "One more thing.", "Sure."), 409)
    repeat = await store(client, user, session_id, "t1", "I live in Lisbon.", "Lisbon is sunny.")
    assert repeat.status_code == 200 and repeat.json()["duplicate"] is True
    assert error["error"] == "SessionEndedError" and error["field"] == "session_id"
    assert (await follow(client, status_uri))["runtimeStatus"] == "Completed"
    error = error_of(await store(client, user, session_id, "t3", "Still there?", "No."), 409)
    assert error["error"] == "SessionEndedError"

    # An ended session is "not found" for context and restore (the guide's troubleshooting), ...
    error = error_of(await client.post("/memory/context", json={"user_id": user, "session_id": session_id}), 404)
    assert error["detail"] == "Session not found"
    error = error_of(await client.post("/sessions/start", json={"user_id": user, "session_id": session_id}), 404)
    assert error["detail"] == "Session not found"
    # ... and ending it again returns the same reflection.
    again = await client.post("/sessions/end", json={"user_id": user, "session_id": session_id})
    assert again.status_code == 202 and shared_service.url(again.json()["statusQueryGetUri"]) == status_uri


async def test_taken_session_id_is_409(client: httpx.AsyncClient):
    user = unique("taken")
    session_id = unique("s")
    assert (await start(client, user, session_id=session_id, restore=False))["session_id"] == session_id
    response = await client.post("/sessions/start", json={"user_id": user, "session_id": session_id, "restore": False})
    error = error_of(response, 409)
    assert error["error"] == "ConflictError" and error["field"] == "session_id"
    # restore=true (the default) continues it instead
    assert (await start(client, user, session_id=session_id))["session_id"] == session_id


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/sessions/start", {"user_id": "   "}, "user_id"),
        ("/sessions/start", {"user_id": "u" * 257}, "user_id"),
        ("/sessions/start", {"user_id": "ok", "session_id": "tab\there"}, "session_id"),
        ("/sessions/start", {"user_id": "ok", "restore": 0}, "restore"),
        ("/sessions/end", {"user_id": "ok", "session_id": ""}, "session_id"),
        ("/memory/context", {"user_id": "ok", "session_id": "s", "after_turn_id": "t\n1"}, "after_turn_id"),
        (
            "/memory/store",
            {"user_id": "ok", "session_id": "s", "turn_id": "t\u20281", "user_message": "Hi", "agent_message": "Hey"},
            "turn_id",
        ),
        ("/memory/store", {"user_id": "ok", "session_id": "s", "user_message": "Hi"}, "agent_message"),
        ("/memory/retrieve", {"user_id": "del\x7f", "query": "anything"}, "user_id"),
        ("/memory/retrieve", {"user_id": "ok", "query": "x", "top_k": 2.5}, "top_k"),
        ("/memory/retrieve", {"user_id": "ok", "query": "x", "top_k": 0}, "top_k"),
        ("/insights", {"user_id": "ok", "limit": 100_000}, "limit"),
        ("/summaries", {"user_id": "bad\nid"}, "user_id"),
    ],
)
async def test_bad_input_is_400_naming_the_field(client: httpx.AsyncClient, path: str, body: dict, field: str):
    error = error_of(await client.post(path, json=body), 400)
    assert error["error"] == "ValidationError" and error["field"] == field, error
    assert field in str(error["detail"])


async def test_bad_user_id_in_the_path_and_bad_bodies_are_400(client: httpx.AsyncClient):
    # "%" and "/" are refused in the path (a "/" arrives as "%2F", which the host never decodes): the query forms
    # take any id.
    for path in ("/users/50%25/export", "/users/a%2Fb/export", "/users/%20%20/export"):
        error = error_of(await client.get(httpx.URL(path)), 400)
        assert error["field"] == "user_id", path
    error = error_of(await client.delete(httpx.URL("/users/a%2Fb")), 400)
    assert error["field"] == "user_id" and "?user_id=" in str(error["detail"])
    export = await client.get("/users", params={"user_id": "a/b 50%"})
    assert export.status_code == 200 and export.json()["user_id"] == "a/b 50%"
    for content in (b"{not json", b"[1, 2]", b""):
        error = error_of(
            await client.post("/sessions/start", content=content, headers={"content-type": "application/json"}), 400
        )
        assert error["error"] == "InvalidRequestError" and error["field"] is None
    error = error_of(await client.post("/sessions/start", json={"user_id": "ok", "extra": 1}), 400)
    assert error["field"] == "extra"


async def test_unknown_routes_and_wrong_methods_answer_the_json_error_body(client: httpx.AsyncClient):
    error = error_of(await client.get("/no/such/route"), 404)
    assert error["error"] == "NotFound" and error["field"] is None
    response = await client.get("/memory/store")
    error = error_of(response, 405)
    assert error["error"] == "MethodNotAllowed" and response.headers["allow"] == "POST"
    response = await client.put("/users/someone")
    assert error_of(response, 405) and response.headers["allow"] == "DELETE"


async def test_the_guides_client_starts_a_session_under_its_own_id(client: httpx.AsyncClient):
    # The guide's client (Pattern 2) picks a uuid4 session id and always sends restore=true.
    user, session_id = unique("guide"), "9b2f4a8e-3c1d-4e5f-8a7b-6c5d4e3f2a1b"
    started = await start(client, user, session_id=session_id, restore=True)
    assert started["session_id"] == session_id and started["restored"] is False
    again = await start(client, user, session_id=session_id, restore=True)
    assert again["session_id"] == session_id and again["restored"] is False


async def test_after_turn_id_that_was_never_stored_is_404_naming_it_not_503(client: httpx.AsyncClient):
    user = unique("after")
    session_id = (await start(client, user))["session_id"]
    assert (await store(client, user, session_id, "t1", "Hi", "Hello")).status_code == 201
    assert (await context(client, user, session_id, after_turn_id="t1"))["turn_count"] == 1
    error = error_of(
        await client.post("/memory/context", json={"user_id": user, "session_id": session_id, "after_turn_id": "t9"}),
        404,
    )
    assert error["field"] == "after_turn_id" and "'t9'" in str(error["detail"])


@pytest.mark.parametrize(
    "timestamp", ["0001-01-01T00:00:00+01:00", "0999-06-01T00:00:00Z", "9999-12-31T23:30:00-01:00"]
)
async def test_an_unrepresentable_timestamp_is_400_and_nothing_is_stored(client: httpx.AsyncClient, timestamp: str):
    user = unique("when")
    session_id = (await start(client, user))["session_id"]
    error = error_of(await store(client, user, session_id, "t1", "Hi", "Hello", timestamp=timestamp), 400)
    assert error["field"] == "timestamp"
    assert (await context(client, user, session_id))["turn_count"] == 0
    # the same turn id with a good timestamp is a new turn, not a conflict with something half-written
    assert (
        await store(client, user, session_id, "t1", "Hi", "Hello", timestamp="1999-06-01T00:00:00Z")
    ).status_code == 201


async def test_a_turn_id_repeated_2000_turns_later_is_the_same_turn_and_the_session_still_ends(
    shared_service: MemoryServiceProcess, client: httpx.AsyncClient
):
    user = unique("long")
    session_id = (await start(client, user))["session_id"]
    first = await store(client, user, session_id, "first", "My name is Ada.", "Hello Ada.")
    assert first.status_code == 201

    async def writer(offset: int) -> None:
        async with httpx.AsyncClient(base_url=shared_service.base_url, timeout=60) as own:
            for n in range(offset, 2000, 8):
                response = await store(own, user, session_id, f"t{n}", f"Line {n} of a long chat.", "Go on.")
                assert response.status_code == 201, response.text

    await asyncio.gather(*(writer(offset) for offset in range(8)))
    repeat = await store(client, user, session_id, "first", "My name is Ada.", "Hello Ada.")
    assert repeat.status_code == 200 and repeat.json() == {**first.json(), "duplicate": True}
    conflict = error_of(await store(client, user, session_id, "first", "My name is Bob.", "Hello Bob."), 409)
    assert conflict["error"] == "ConflictError" and conflict["field"] == "user_message"
    error_of(await store(client, user, session_id, "t5", "Hi", "Hello", timestamp="0500-01-01T00:00:00Z"), 400)
    assert (await context(client, user, session_id))["turn_count"] == 2001

    response = await client.post("/sessions/end", json={"user_id": user, "session_id": session_id})
    assert response.status_code == 202, response.text
    status_uri = shared_service.url(response.json()["statusQueryGetUri"])
    error = error_of(await store(client, user, session_id, "after", "Still there?", "No."), 409)
    assert error["error"] == "SessionEndedError"
    status = await follow(client, status_uri, within=120)
    assert status["runtimeStatus"] == "Completed", status
    assert status["output"]["turn_count"] == 2001
