"""`--easy-auth`: the local stand-in for App Service Authentication strips the principal headers clients send and
injects them for the test principal of `Authorization: Bearer devhost-principal:<id>`."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from devhost import DevHost, HostOptions
from devhost.easyauth import EASY_AUTH_ENV, UnknownTokenError, easy_auth_enabled, principal_of
from tests.devhost.conftest import APP_MODULE, NEVER, HostProcess, make_script_root

FORGED = {
    "X-MS-CLIENT-PRINCIPAL-ID": "forged-id",
    "X-MS-CLIENT-PRINCIPAL-NAME": "forged@contoso.example",
    "X-MS-CLIENT-PRINCIPAL-IDP": "aad",
    "X-MS-CLIENT-PRINCIPAL": base64.b64encode(b'{"claims": [{"typ": "oid", "val": "forged-id"}]}').decode(),
    "X-MS-TOKEN-AAD-ACCESS-TOKEN": "forged-token",
}
OWNED = ("x-ms-client-principal", "x-ms-token-")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def easy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevHost]:
    root = make_script_root(tmp_path_factory.mktemp("easy"), {"SAMPLE_HUB": "DevhostTests", "SAMPLE_SCHEDULE": NEVER})
    options = HostOptions(
        app=APP_MODULE, script_root=root, state_dir=root / "state", port=0, easy_auth=True, durable_latency_ms=0
    )
    running = DevHost(options)
    await running.start()
    yield running
    await running.stop()


async def seen_by_the_app(base_url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/api/headers", headers=headers) as response:
        return response.status, await response.json()


def owned(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name.startswith(OWNED)}


async def test_headers_a_client_sends_never_reach_the_app(easy: DevHost):
    status, headers = await seen_by_the_app(easy.base_url, {**FORGED, "X-Sample": "kept"})
    assert status == 200
    assert owned(headers) == {}, "a request without a token reaches the app anonymous"
    assert headers["x-sample"] == "kept"


async def test_a_stand_in_token_signs_the_request_in_as_its_principal(easy: DevHost):
    token = {"Authorization": "Bearer devhost-principal:6f1c2a7e-3b8d"}
    status, headers = await seen_by_the_app(easy.base_url, {**FORGED, **token})
    assert status == 200
    principal = json.loads(base64.b64decode(headers.pop("x-ms-client-principal")))
    assert owned(headers) == {
        "x-ms-client-principal-id": "6f1c2a7e-3b8d",
        "x-ms-client-principal-name": "6f1c2a7e-3b8d",
        "x-ms-client-principal-idp": "aad",
    }
    assert principal["auth_typ"] == "aad"
    assert {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "6f1c2a7e-3b8d"} in (
        principal["claims"]
    )
    # As App Service Authentication does, the Authorization header goes on to the app (which never reads it).
    assert headers["authorization"] == token["Authorization"]


@pytest.mark.parametrize(
    "authorization",
    ["Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "Bearer devhost-principal:", "Bearer devhost-principal:" + "a" * 257],
    ids=["an Entra ID token", "no id", "an id too long"],
)
async def test_a_bearer_token_the_stand_in_cannot_accept_is_a_401(easy: DevHost, authorization: str):
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{easy.base_url}/api/headers", headers={"Authorization": authorization}) as response,
    ):
        assert response.status == 401
        body = await response.json()
    assert body["error"] == "Unauthorized" and body["field"] is None and "devhost-principal:<id>" in body["detail"]


async def test_other_authorization_schemes_are_anonymous(easy: DevHost):
    status, headers = await seen_by_the_app(easy.base_url, {"Authorization": "Basic dTpw", **FORGED})
    assert status == 200 and owned(headers) == {}


async def test_the_banner_says_the_stand_in_is_on(easy: DevHost, host: DevHost):
    assert "Easy Auth stand-in (--easy-auth)" in easy.banner()
    assert "Easy Auth" not in host.banner()


async def test_without_easy_auth_devhost_passes_every_header_on(host: DevHost):
    status, headers = await seen_by_the_app(host.base_url, {"X-MS-CLIENT-PRINCIPAL-ID": "as-sent"})
    assert status == 200 and headers["x-ms-client-principal-id"] == "as-sent"


def test_the_environment_turns_it_on_unless_the_command_line_says(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(EASY_AUTH_ENV, raising=False)
    assert easy_auth_enabled(None) is False
    for value in ("1", "true", "Yes", "on"):
        monkeypatch.setenv(EASY_AUTH_ENV, value)
        assert easy_auth_enabled(None) is True
        assert easy_auth_enabled(False) is False
    monkeypatch.setenv(EASY_AUTH_ENV, "0")
    assert easy_auth_enabled(None) is False and easy_auth_enabled(True) is True


async def test_python_m_devhost_easy_auth_runs_the_stand_in_in_the_http_process(tmp_path: Path):
    root = make_script_root(tmp_path / "app", {"SAMPLE_HUB": "EasyAuthProcess", "SAMPLE_SCHEDULE": NEVER})
    process = HostProcess(root, tmp_path / "state", "--easy-auth").start()
    try:
        assert "Easy Auth stand-in (--easy-auth)" in process.output()
        token = {"Authorization": "Bearer devhost-principal:alice"}
        status, headers = await seen_by_the_app(process.base_url, {**FORGED, **token})
        assert status == 200 and headers["x-ms-client-principal-id"] == "alice"
        async with aiohttp.ClientSession() as session, session.get(f"{process.base_url}/api/pid") as response:
            assert await response.json() == process.pid  # HTTP triggers run in the host's own process
    finally:
        assert process.stop() == 0


def test_an_id_with_a_control_character_is_no_principal():
    with pytest.raises(UnknownTokenError):
        principal_of({"Authorization": "Bearer devhost-principal:a\x7fb"})
    assert principal_of({"authorization": "bearer  devhost-principal: bob "}) == "bob"
    assert principal_of({}) is None
