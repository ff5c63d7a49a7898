"""`--enable-auth`: function, admin and anonymous levels, and the Durable webhooks' system key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from devhost import DevHost, HostOptions
from tests.devhost.conftest import APP_MODULE, NEVER, eventually, make_script_root

API = "/runtime/webhooks/durabletask"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevHost]:
    root = make_script_root(tmp_path_factory.mktemp("auth"), {"SAMPLE_HUB": "DevhostTests", "SAMPLE_SCHEDULE": NEVER})
    options = HostOptions(
        app=APP_MODULE, script_root=root, state_dir=root / "state", port=0, enable_auth=True, durable_latency_ms=0
    )
    running = DevHost(options)
    await running.start()
    yield running
    await running.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def http(secured: DevHost) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=secured.base_url) as session:
        yield session


async def status(http: aiohttp.ClientSession, path: str, **kwargs) -> int:
    async with http.get(path, **kwargs) as response:
        return response.status


async def test_keys_are_stored_in_the_state_dir_and_printed(secured: DevHost):
    assert secured.keys is not None
    stored = json.loads((Path(secured.options.state_dir) / "keys.json").read_text())
    assert stored["masterKey"] == secured.keys.master
    banner = secured.banner()
    assert secured.keys.master in banner and secured.keys.default_function_key in banner


async def test_anonymous_level_needs_no_key(http: aiohttp.ClientSession):
    assert await status(http, "/api/greet/x") == 200


async def test_a_missing_or_wrong_key_is_a_401_with_a_json_error(http: aiohttp.ClientSession):
    for params in ({}, {"code": "wrong"}):
        async with http.get("/api/secure/admin", params=params) as response:
            assert response.status == 401
            assert response.headers["Content-Type"].startswith("application/json")
            body = await response.json()
        assert body["error"] == "Unauthorized" and body["field"] is None and "master key" in body["detail"]
    async with http.get(f"{API}/instances/") as response:
        assert response.status == 401 and (await response.json())["error"] == "Unauthorized"


async def test_function_level_accepts_a_function_key_or_the_master_key(http: aiohttp.ClientSession, secured: DevHost):
    keys = secured.keys
    assert keys is not None
    assert await status(http, "/api/secure/function") == 401
    assert await status(http, "/api/secure/function", params={"code": "wrong"}) == 401
    assert await status(http, "/api/secure/function", params={"code": keys.default_function_key}) == 200
    assert await status(http, "/api/secure/function", headers={"x-functions-key": keys.master}) == 200


async def test_admin_level_needs_the_master_key(http: aiohttp.ClientSession, secured: DevHost):
    keys = secured.keys
    assert keys is not None
    assert await status(http, "/api/secure/admin", params={"code": keys.default_function_key}) == 401
    assert await status(http, "/api/secure/admin", headers={"x-functions-key": keys.master}) == 200


async def test_durable_webhooks_need_the_system_key(http: aiohttp.ClientSession, secured: DevHost):
    keys = secured.keys
    assert keys is not None
    assert await status(http, f"{API}/instances/") == 401
    assert await status(http, f"{API}/instances/", params={"code": keys.default_function_key}) == 401
    assert await status(http, f"{API}/instances/", params={"code": keys.durable_key}) == 200
    assert await status(http, f"{API}/instances/", params={"code": keys.master}) == 200


async def test_client_binding_works_and_status_urls_carry_the_key(http: aiohttp.ClientSession, secured: DevHost):
    async with http.post("/api/start/one_activity", json="secure") as response:
        assert response.status == 202
        payload = await response.json()
    assert payload["statusQueryGetUri"].endswith(f"&code={secured.keys.durable_key}")

    async def done() -> dict | None:
        async with http.get(payload["statusQueryGetUri"]) as response:
            return (await response.json()) if response.status == 200 else None

    assert (await eventually(done))["output"] == "Hello secure"
