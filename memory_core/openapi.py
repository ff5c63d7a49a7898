"""The OpenAPI 3.1 description of the HTTP API, generated from the same pydantic models the handlers validate with.

The document carries every limit the handlers enforce, with the values of the settings it is generated with (see
``memory_core.models``: a limited field names its setting in ``x-setting``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from memory_core import models
from memory_core.config import Settings
from memory_core.ports import UserExport

Auth = Literal["anonymous", "function", "admin"]


@dataclass(frozen=True)
class Endpoint:
    """One operation of the API."""

    method: Literal["get", "post", "delete"]
    path: str
    summary: str
    response: type[BaseModel]
    status: int = 200
    request: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    auth: Auth = "function"
    errors: tuple[int, ...] = (400, 503)
    repeat_status: int | None = None  # the success status of an idempotent repeat, when it differs
    running_status: int | None = None  # the status of the same body while the work it reports still runs


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "post",
        "/sessions/start",
        "Start a new session or restore an existing one",
        models.ContextResponse,
        request=models.StartSessionRequest,
        errors=(400, 404, 409, 503),
    ),
    Endpoint(
        "post",
        "/sessions/end",
        "End a session and trigger reflection",
        models.EndSessionResponse,
        202,
        models.EndSessionRequest,
        errors=(400, 404, 503),
    ),
    Endpoint(
        "get",
        "/sessions/reflection",
        "The session's reflection (202 while it runs, 200 once done): the statusQueryGetUri of /sessions/end",
        models.ReflectionStatusResponse,
        query=models.ReflectionStatusRequest,
        errors=(400, 404, 503),
        running_status=202,
    ),
    Endpoint(
        "post",
        "/memory/context",
        "Get the session's current context",
        models.ContextResponse,
        request=models.ContextRequest,
        errors=(400, 404, 503),
    ),
    Endpoint(
        "post",
        "/memory/store",
        "Store a conversation turn (201 once durable; 200 for a turn_id stored before)",
        models.StoreTurnResponse,
        201,
        models.StoreTurnRequest,
        errors=(400, 404, 409, 503),
        repeat_status=200,
    ),
    Endpoint(
        "post", "/memory/retrieve", "Search the user's memory", models.RetrieveResponse, request=models.RetrieveRequest
    ),
    Endpoint(
        "post",
        "/insights",
        "Get the user's long-term insights",
        models.InsightsResponse,
        request=models.InsightsRequest,
    ),
    Endpoint(
        "post",
        "/summaries",
        "Get the user's session summaries",
        models.SummariesResponse,
        request=models.SummariesRequest,
    ),
    Endpoint("get", "/health", "Health check", models.HealthResponse, auth="anonymous", errors=(503,)),
    Endpoint("get", "/stats", "Session pool statistics", models.StatsResponse, auth="admin", errors=(503,)),
    Endpoint(
        "delete",
        "/users/{user_id}",
        "Forget everything about a user (an id without / \\ # ? %; DELETE /users?user_id= takes any id)",
        models.ForgetResponse,
        auth="admin",
    ),
    Endpoint(
        "delete",
        "/users",
        "Forget everything about a user (any id, in the query string)",
        models.ForgetResponse,
        query=models.UserQuery,
        auth="admin",
    ),
    Endpoint(
        "get",
        "/users/{user_id}/export",
        "Export everything stored about a user (an id without / \\ # ? %; GET /users?user_id= takes any id)",
        UserExport,
        auth="admin",
    ),
    Endpoint(
        "get",
        "/users",
        "Export everything stored about a user (any id, in the query string)",
        UserExport,
        query=models.UserQuery,
        auth="admin",
    ),
)

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "function": [{"functionKey": []}, {"functionKeyHeader": []}],
    "admin": [{"functionKey": []}, {"functionKeyHeader": []}],
    "anonymous": [],
}


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """The API as an OpenAPI 3.1 document, with the limits of ``settings`` (the defaults of ``Settings`` if None)."""
    limits = {name: int(Settings.model_fields[name].default) for name in models.LIMIT_KEYWORDS}
    if settings is not None:
        limits = models.limits_context(settings)
    return copy.deepcopy(_document(tuple(sorted(limits.items()))))


def _apply_limits(node: Any, limits: dict[str, int]) -> None:
    """Write the configured value of every ``x-setting`` into the keyword that setting bounds."""
    if isinstance(node, dict):
        setting = node.get("x-setting")
        if isinstance(setting, str) and setting in limits:
            node[models.LIMIT_KEYWORDS[setting]] = limits[setting]
        for value in node.values():
            _apply_limits(value, limits)
    elif isinstance(node, list):
        for value in node:
            _apply_limits(value, limits)


@lru_cache(maxsize=8)
def _document(limits: tuple[tuple[str, int], ...]) -> dict[str, Any]:
    used = {e.response for e in ENDPOINTS} | {e.request for e in ENDPOINTS if e.request} | {models.ErrorResponse}
    ordered = sorted(used, key=lambda m: m.__name__)
    refs, schema = models_json_schema(
        [(m, "validation" if m in {e.request for e in ENDPOINTS} else "serialization") for m in ordered],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.get("$defs", {})

    def ref(model: type[BaseModel], mode: str = "serialization") -> dict[str, Any]:
        return refs[(model, mode)]  # type: ignore[index]

    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        operation: dict[str, Any] = {
            "summary": e.summary,
            "operationId": e.method + e.path.replace("/", "_").replace("{", "").replace("}", ""),
            "security": _SECURITY[e.auth],
            "responses": {
                str(e.status): {"description": "Success", "content": {"application/json": {"schema": ref(e.response)}}},
                **(
                    {
                        str(e.repeat_status): {
                            "description": "A repeat of a request that succeeded before: nothing was written",
                            "content": {"application/json": {"schema": ref(e.response)}},
                        }
                    }
                    if e.repeat_status
                    else {}
                ),
                **{
                    str(code): {
                        "description": _ERROR_TEXT[code],
                        "content": {"application/json": {"schema": ref(models.ErrorResponse)}},
                    }
                    for code in e.errors
                },
            },
        }
        if e.request is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(e.request, "validation")}},
            }
        if e.auth != "anonymous":
            operation["responses"]["401"] = {
                "description": _ERROR_TEXT[401],
                "content": {"application/json": {"schema": ref(models.ErrorResponse)}},
            }
        if e.running_status is not None:
            operation["responses"][str(e.running_status)] = {
                "description": "Still running",
                "content": {"application/json": {"schema": ref(e.response)}},
            }
        parameters = _parameters(e.query, "query") if e.query is not None else []
        if "{user_id}" in e.path:
            parameters += _parameters(models.UserRef, "path")
        if parameters:
            operation["parameters"] = parameters
        paths.setdefault(e.path, {})[e.method] = operation
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "Agent Memory Service",
            "version": "1.0.0",
            "description": "Sessions, turns, context, search and reflection for conversational agents. Every error "
            "this service answers is a JSON ErrorResponse; the local host (devhost) answers unknown routes (404), "
            "wrong methods (405, with Allow) and missing or wrong keys (401) with the same body, while on Azure the "
            "Functions host answers those itself.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "query", "name": "code"},
                "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
            },
        },
    }
    _apply_limits(document, dict(limits))
    return document


def _parameters(model: type[BaseModel], where: Literal["query", "path"]) -> list[dict[str, Any]]:
    """The parameters of a model whose fields are strings (query or path parameters)."""
    schema = model.model_json_schema()
    required = schema.get("required", [])
    return [
        {"name": name, "in": where, "required": where == "path" or name in required, "schema": prop}
        for name, prop in schema["properties"].items()
    ]


_ERROR_TEXT = {
    400: "Bad request: the body names the field",
    401: "No key, or a wrong one. The local host (devhost --enable-auth) answers with this body; on Azure the "
    "Functions host answers 401 itself, with an empty body",
    404: "Not found: the session (or the after_turn_id named)",
    409: "Conflict: the session has ended, the session id is taken, or the turn_id was stored with other messages",
    503: "Not ready, or a dependency is unavailable; retry",
}
