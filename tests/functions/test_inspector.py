"""The memory inspector's routes through the SDK's entry points: its page, its static files and its user listing."""

from __future__ import annotations

import re
from typing import Any

import azure.functions as func
import pytest

from memory_core import use_cases
from tests.functions.api_client import Api, http_request

USER = "ada <b>lovelace</b>"


def call_static(functions: dict[str, Any], function: str, route: str, **route_params: str) -> func.HttpResponse:
    response = functions[function].get_user_function()(req=http_request("GET", route, route_params=route_params))
    assert isinstance(response, func.HttpResponse)
    return response


def test_the_page_is_html_that_loads_only_its_own_script_and_stylesheet(functions: dict[str, Any]) -> None:
    response = call_static(functions, "inspector_page", "inspector")
    assert response.status_code == 200 and response.mimetype == "text/html"
    page = response.get_body().decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(sources) == ["/inspector/assets/inspector.css", "/inspector/assets/inspector.js"]
    assert "<script>" not in page and "style=" not in page  # nothing inline: the policy allows only 'self'
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert response.headers["Referrer-Policy"] == "no-referrer"  # the page's URL may carry the key
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("asset", "mimetype"), [("inspector.js", "text/javascript"), ("inspector.css", "text/css")])
def test_the_script_and_stylesheet_are_served(functions: dict[str, Any], asset: str, mimetype: str) -> None:
    response = call_static(functions, "inspector_asset", f"inspector/assets/{asset}", name=asset)
    assert response.status_code == 200 and response.mimetype == mimetype
    assert response.get_body()


def test_the_script_never_parses_data_as_markup(functions: dict[str, Any]) -> None:
    script = call_static(functions, "inspector_asset", "inspector/assets/inspector.js", name="inspector.js")
    source = script.get_body().decode()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, sink
    assert "textContent" in source


@pytest.mark.parametrize("name", ["index.html", "../routes.py", "inspector.jsx", ""])
def test_other_files_are_a_json_404(functions: dict[str, Any], name: str) -> None:
    response = call_static(functions, "inspector_asset", f"inspector/assets/{name}", name=name)
    assert response.status_code == 404 and response.mimetype == "application/json"
    assert response.get_body().decode().startswith('{"error":"NotFoundError"')


async def _session(api: Api, user: str, session: str, turns: int) -> None:
    assert (await api.post("start_session", {"user_id": user, "session_id": session})).status == 200
    for i in range(turns):
        body = {"user_id": user, "session_id": session, "user_message": f"<i>{i}</i>", "agent_message": "ok"}
        assert (await api.post("store_turn", body)).status == 201


async def test_users_lists_every_user_with_their_sessions_newest_first(api: Api) -> None:
    assert (await api.get("inspector_users")).body == {"users": [], "sessions": 0, "truncated": False}
    await _session(api, "bob", "b1", 1)
    await _session(api, USER, "a1", 2)
    await _session(api, "bob", "b2", 0)
    await api.post("end_session", {"user_id": USER, "session_id": "a1"})

    reply = await api.get("inspector_users")
    assert reply.status == 200 and reply.body["sessions"] == 3 and reply.body["truncated"] is False
    users = reply.body["users"]
    assert [u["user_id"] for u in users] == [USER, "bob"]
    assert [s["session_id"] for s in users[1]["sessions"]] == ["b2", "b1"]
    (ada,) = users[0]["sessions"]
    assert ada["status"] == "ended" and ada["turn_count"] == 2
    assert users[0]["last_activity"] == ada["last_activity"]


async def test_users_says_when_older_sessions_are_left_out(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(use_cases.list_users, "__defaults__", (2,))
    for session in ("s1", "s2", "s3"):
        await _session(api, "carol", session, 0)
    reply = await api.get("inspector_users")
    assert reply.body["sessions"] == 2 and reply.body["truncated"] is True
    assert [s["session_id"] for s in reply.body["users"][0]["sessions"]] == ["s3", "s2"]


async def test_users_answers_errors_as_every_route_does(
    functions: dict[str, Any], api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret")

    monkeypatch.setattr(use_cases, "list_users", broken)
    reply = await api.get("inspector_users")
    assert reply.status == 500 and reply.body["error"] == "InternalError" and "secret" not in reply.text


async def test_users_is_503_when_the_service_cannot_start(functions: dict[str, Any], settings_env: Any) -> None:
    settings_env(K_TURN_BUFFER=0)
    reply = await Api(functions, None).get("inspector_users")
    assert reply.status == 503 and reply.body["error"] == "ServiceUnavailable"
    assert reply.headers.get("Retry-After") == "1"
