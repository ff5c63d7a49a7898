"""HTTP triggers over real HTTP: routing, methods, parameters, request and response mapping."""

from __future__ import annotations

import aiohttp
import pytest
from yarl import URL

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


async def error_of(response: aiohttp.ClientResponse, status: int) -> dict[str, object]:
    """The JSON error body devhost answers with when no function does."""
    assert response.status == status
    assert response.headers["Content-Type"].startswith("application/json")
    body = await response.json()
    assert set(body) == {"error", "detail", "field"} and body["field"] is None
    return body


async def test_unknown_route_and_missing_prefix_return_404(http: aiohttp.ClientSession):
    async with http.get("/api/nope") as response:
        body = await error_of(response, 404)
    assert body == {"error": "NotFound", "detail": "No function matches GET /api/nope", "field": None}
    async with http.get("/items/books/1") as response:
        assert (await error_of(response, 404))["error"] == "NotFound"


async def test_wrong_method_returns_405_with_allowed_methods(http: aiohttp.ClientSession):
    async with http.delete("/api/echo") as response:
        body = await error_of(response, 405)
        assert response.headers["Allow"] == "POST, PUT"
    assert body["error"] == "MethodNotAllowed" and body["detail"].endswith("allowed: POST, PUT")


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
        assert "secret" not in await response.text()
        assert (await error_of(response, 500))["error"] == "InternalError"


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("a%20b", "a b"),
        ("a+b", "a+b"),  # a path is no form: + stays +
        ("%C3%BCber", "über"),
        ("a%23b%3Fc%25d", "a#b?c%d"),
        ("a%2Fb", "a%2Fb"),  # the host never decodes %2F: a / would change the segments
        ("a%2fb", "a%2fb"),
        ("a%252Fb", "a%2Fb"),  # decoded once
        ("%C3%28x", "%C3(x"),  # not UTF-8: kept as written
        ("x/../y", "y"),  # dot segments go after decoding
        ("x/%2E%2E/y", "y"),
    ],
)
async def test_route_values_are_the_path_decoded_as_the_functions_host_does(
    http: aiohttp.ClientSession, raw: str, name: str
):
    async with http.get(URL(f"/api/greet/{raw}", encoded=True)) as response:
        assert response.status == 200
        assert await response.text() == f"hello {name}"


async def test_an_escaped_nul_in_the_path_is_400(http: aiohttp.ClientSession):
    async with http.get(URL("/api/greet/a%00b", encoded=True)) as response:
        assert (await error_of(response, 400))["error"] == "BadRequest"


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
