"""Call the app's HTTP functions as the worker does: a ``func.HttpRequest`` in, a ``func.HttpResponse`` out."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from tests.functions.taskhub import TaskHub


@dataclass
class Reply:
    """An HTTP response, decoded."""

    status: int
    body: Any
    headers: dict[str, str]
    text: str


def http_request(
    method: str,
    route: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    route_params: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> func.HttpRequest:
    """A request as the worker builds it (``raw`` is the body as sent, for bodies that are not JSON)."""
    if raw is None:
        raw = b"" if body is None else json.dumps(body).encode()
    return func.HttpRequest(
        method,
        f"http://localhost:7071/{route}",
        headers={**({"Content-Type": "application/json"} if raw else {}), **(headers or {})},
        route_params=route_params or {},
        params=params or {},
        body=raw,
    )


class Api:
    """The app's HTTP functions by function name; durable-client ones get the task hub's client.

    On a running task hub a call returns once the background work it started has run to its end.
    """

    def __init__(self, functions: dict[str, Any], hub: TaskHub | None) -> None:
        self.functions = functions
        self.hub = hub

    def route_of(self, name: str) -> str:
        return str(self.functions[name].get_trigger().route)

    async def send(self, name: str, req: func.HttpRequest) -> Reply:
        fn = self.functions[name].get_user_function()
        client_function = getattr(fn, "client_function", None)
        if client_function is not None:
            assert self.hub is not None, f"{name} needs a durable client"
            response = await self.hub.call(client_function, req=req)
        else:
            response = fn(req=req)
            if inspect.isawaitable(response):
                response = await response
        assert isinstance(response, func.HttpResponse)
        text = response.get_body().decode()
        assert response.mimetype == "application/json", response.mimetype
        return Reply(response.status_code, json.loads(text), dict(response.headers), text)

    async def post(
        self, name: str, body: Any = None, *, raw: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        return await self.send(name, http_request("POST", self.route_of(name), body, raw=raw, headers=headers))

    async def get(
        self,
        name: str,
        query: dict[str, str] | None = None,
        *,
        headers: dict[str, str] | None = None,
        **route_params: str,
    ) -> Reply:
        route = self.route_of(name).format(**route_params)
        request = http_request("GET", route, route_params=route_params, params=query, headers=headers)
        return await self.send(name, request)

    async def delete(
        self,
        name: str,
        query: dict[str, str] | None = None,
        *,
        headers: dict[str, str] | None = None,
        **route_params: str,
    ) -> Reply:
        route = self.route_of(name).format(**route_params)
        request = http_request("DELETE", route, route_params=route_params, params=query, headers=headers)
        return await self.send(name, request)
