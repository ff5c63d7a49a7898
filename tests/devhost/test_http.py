"""HTTP triggers over real HTTP: routing, methods, parameters, request and response mapping."""

from __future__ import annotations

import aiohttp

from devhost import DevHost


async def test_banner_lists_functions_with_urls_and_trigger_types(host: DevHost):
    banner = host.banner()
    assert "Functions:" in banner
    assert f"  get_item: [GET] {host.base_url}/api/items/{{category:alpha}}/{{item_id:int}}" in banner
    assert f"  echo: [POST,PUT] {host.base_url}/api/echo" in banner
    assert "  full_tour: orchestrationTrigger" in banner
    assert "  hello: activityTrigger" in banner
    assert "  counter: entityTrigger" in banner
    assert "  tick: timerTrigger" in banner


async def test_route_params_query_and_url_reach_the_function(http: aiohttp.ClientSession, host: DevHost):
    async with http.get("/api/items/books/42", params={"sort": "asc"}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/json"
        body = await response.json()
    assert body["route"] == {"category": "books", "item_id": "42"}
    assert body["query"] == {"sort": "asc"}
    assert body["url"] == f"{host.base_url}/api/items/books/42?sort=asc"


async def test_route_constraints_reject_non_matching_values(http: aiohttp.ClientSession):
    async with http.get("/api/items/books/abc") as response:
        assert response.status == 404
    async with http.get("/api/items/123/4") as response:
        assert response.status == 404
    async with http.get("/api/items/books/99999999999") as response:  # beyond int32
        assert response.status == 404


async def test_literal_segments_match_case_insensitively(http: aiohttp.ClientSession):
    async with http.get("/API/Items/books/1") as response:
        assert response.status == 200


async def test_optional_parameter_may_be_omitted(http: aiohttp.ClientSession):
    async with http.get("/api/greet/ada") as response:
        assert await response.text() == "hello ada"
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    async with http.get("/api/greet") as response:
        assert await response.text() == "hello nobody"


async def test_catch_all_parameter_takes_the_rest_of_the_path(http: aiohttp.ClientSession):
    async with http.get("/api/files/a/b/c.txt") as response:
        assert (await response.json()) == {"path": "a/b/c.txt"}
    async with http.get("/api/files") as response:
        assert (await response.json()) == {"path": None}


async def test_unknown_route_and_missing_prefix_return_404(http: aiohttp.ClientSession):
    async with http.get("/api/nope") as response:
        assert response.status == 404
    async with http.get("/items/books/1") as response:
        assert response.status == 404


async def test_wrong_method_returns_405_with_allowed_methods(http: aiohttp.ClientSession):
    async with http.delete("/api/echo") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST, PUT"


async def test_body_headers_status_and_mimetype_are_mapped(http: aiohttp.ClientSession):
    async with http.put("/api/echo", json={"a": [1, 2]}, headers={"X-Sample": "yes"}) as response:
        assert response.status == 201
        assert response.headers["X-Echo"] == "yes"
        assert response.headers["Content-Type"] == "application/json"
        assert await response.json() == {"method": "PUT", "body": {"a": [1, 2]}, "header": "yes"}


async def test_none_return_is_204(http: aiohttp.ClientSession):
    async with http.post("/api/nothing") as response:
        assert response.status == 204
        assert await response.read() == b""


async def test_handler_exception_is_a_generic_500(http: aiohttp.ClientSession):
    async with http.get("/api/boom") as response:
        assert response.status == 500
        assert "secret" not in await response.text()


async def test_async_handler_gets_the_invocation_context(http: aiohttp.ClientSession):
    async with http.get("/api/whoami") as response:
        body = await response.json()
    assert body["function_name"] == "whoami"
    assert len(body["invocation_id"]) == 36


async def test_keys_are_not_checked_by_default(http: aiohttp.ClientSession):
    async with http.get("/api/secure/function") as response:
        assert response.status == 200
    async with http.get("/api/secure/admin") as response:
        assert response.status == 200
    async with http.get("/runtime/webhooks/durabletask/instances/") as response:
        assert response.status == 200
