"""Ids as users write them, through every route on the SQLite store: ``+``, spaces, ``/``, ``#``, ``?``, ``%``,
non-ASCII, 256 characters. Each id is its own user, session and turn; Durable instance ids and entity keys are
digests of them, so none holds a character the task hub's storage refuses, and no two ids share one.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from memory_core.fields import PATH_UNSAFE_CHARS
from memory_core.service import MemoryService
from orchestrations import names
from tests.functions.api_client import Api
from tests.functions.taskhub import TaskHub

pytestmark = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")

ODD_IDS = [
    "user+tag@example.com",
    "john doe",
    "a/b",
    "a%2Fb",
    "x#y?z",
    "100%",
    "müller",
    "用户 😀",
    "😀" * 256,
]
# Durable instance ids and entity keys: short, of one shape, nothing an Azure Table key refuses.
SAFE_KEY = re.compile(r"[0-9a-z-]{1,100}")
FACTS = ["I live in Lisbon.", "I work as a nurse.", "I love hiking in the mountains."]


def turn_id(session: str, n: int) -> str:
    return f"{session[:250]} #{n}"


def fits_a_path(user_id: str) -> bool:
    return re.search(f"[{PATH_UNSAFE_CHARS}]", user_id) is None


async def a_finished_session(api: Api, user: str, session: str) -> dict[str, Any]:
    """Start, store three facts (turn ids made of the session's id), context, end: every write route."""
    reply = await api.post("start_session", {"user_id": user, "session_id": session, "restore": False})
    assert reply.status == 200, reply.body
    assert (reply.body["user_id"], reply.body["session_id"]) == (user, session)
    for n, fact in enumerate(FACTS):
        tid = turn_id(session, n)
        body = {"user_id": user, "session_id": session, "turn_id": tid, "user_message": fact, "agent_message": "ok"}
        reply = await api.post("store_turn", body)
        assert reply.status == 201, reply.body
        assert (reply.body["turn_id"], reply.body["seq"]) == (tid, n + 1)
        assert (await api.post("store_turn", body)).status == 200  # the same turn_id again
    reply = await api.post(
        "get_context", {"user_id": user, "session_id": session, "after_turn_id": turn_id(session, 2)}
    )
    assert reply.status == 200, reply.body
    assert [m["content"] for m in reply.body["active_context"] if m["role"] == "user"] == FACTS[-2:]
    ended = await api.post("end_session", {"user_id": user, "session_id": session})
    assert ended.status == 202, ended.body
    return ended.body


@pytest.mark.parametrize("odd", ODD_IDS, ids=range(len(ODD_IDS)))
async def test_an_odd_id_goes_through_every_route(
    running_api: Api, running_hub: TaskHub, service: MemoryService, odd: str
) -> None:
    user = session = odd
    ended = await a_finished_session(running_api, user, session)

    # reflection, followed on its own route (the query string carries the ids)
    uri = ended["statusQueryGetUri"]
    assert uri.startswith("http://localhost:7071/sessions/reflection?")
    from urllib.parse import parse_qs, urlsplit

    query = {k: v[0] for k, v in parse_qs(urlsplit(uri).query).items()}
    assert query == {"user_id": user, "session_id": session}
    status = await running_api.get("reflection_status", query)
    assert status.status == 200 and status.body["runtimeStatus"] == "Completed", status.body

    # reads
    retrieved = await running_api.post("retrieve", {"user_id": user, "query": "Lisbon"})
    assert retrieved.status == 200 and retrieved.body["items"][0]["session_id"] == session
    insights = await running_api.post("insights", {"user_id": user})
    assert insights.status == 200 and insights.body["count"] >= 1
    summaries = await running_api.post("summaries", {"user_id": user})
    assert summaries.status == 200 and [s["session_id"] for s in summaries.body["items"]] == [session]

    # Durable: every instance id and entity key is a digest under the user's prefix
    instances = await running_hub.instances()
    assert instances
    for instance_id in instances:
        assert SAFE_KEY.fullmatch(instance_id) and instance_id.startswith(names.user_prefix(user)), instance_id
    key = names.session_key(user, session)
    assert SAFE_KEY.fullmatch(key) and key.startswith(names.user_entity_prefix(user)) and len(key) == 51
    assert await running_hub.entity_state(names.SESSION_ENTITY, key) is not None

    # export, in the query string always and in the path when the id fits it
    exported = await running_api.get("export_user_by_query", {"user_id": user})
    assert exported.status == 200 and exported.body["user_id"] == user
    assert [t["turn_id"] for t in exported.body["turns"]] == [turn_id(session, n) for n in range(3)]
    by_path = await running_api.get("export_user", user_id=user)
    if fits_a_path(user):
        assert by_path.status == 200 and by_path.body == exported.body
    else:
        assert by_path.status == 400 and by_path.body["field"] == "user_id"
        assert "?user_id=" in by_path.body["detail"]


@pytest.mark.parametrize("form", ["query", "path"])
async def test_forget_takes_an_odd_id_and_only_that_user(running_api: Api, service: MemoryService, form: str) -> None:
    users = [u for u in ODD_IDS if form == "query" or fits_a_path(u)]
    for user in users:
        await a_finished_session(running_api, user, f"session of {user}"[:256])
    gone, *kept = users
    if form == "query":
        reply = await running_api.delete("forget_user_by_query", {"user_id": gone})
    else:
        reply = await running_api.delete("forget_user", user_id=gone)
    assert reply.status < 300, reply.body
    assert reply.body["user_id"] == gone and reply.body["turns"] == 3
    assert (await service.store.export_user(gone)).turns == []
    for user in kept:
        assert len((await service.store.export_user(user)).turns) == 3, user


async def test_ids_that_differ_only_in_escapes_are_different_users(running_api: Api, service: MemoryService) -> None:
    # What a URL decoder, a key escaper or a Unicode normaliser might fold into one is never one here.
    lookalikes = ["a/b", "a%2Fb", "a%252Fb", "a b", "a+b", "a%20b", "müller", "mu\u0308ller"]
    for n, user in enumerate(lookalikes):
        reply = await running_api.post("start_session", {"user_id": user, "session_id": "s", "restore": False})
        assert reply.status == 200, (user, reply.body)
        body = {"user_id": user, "session_id": "s", "user_message": f"fact {n}", "agent_message": "ok"}
        assert (await running_api.post("store_turn", body)).status == 201
    for n, user in enumerate(lookalikes):
        context = await running_api.post("get_context", {"user_id": user, "session_id": "s"})
        assert [m["content"] for m in context.body["active_context"]] == [f"fact {n}", "ok"], user
    keys = {names.session_key(user, "s") for user in lookalikes}
    prefixes = {names.user_prefix(user) for user in lookalikes}
    assert len(keys) == len(prefixes) == len(lookalikes)
