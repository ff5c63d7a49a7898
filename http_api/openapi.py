"""The OpenAPI 3.1 description of the HTTP API, generated from the same pydantic models the handlers validate with.

The document carries every limit the handlers enforce, with the values of the settings it is generated with (see
``memory_core.models``: a limited field names its setting in ``x-setting``), and who the user of a memory route is:
with ``CALLER_IDENTITY=principal`` the principal App Service Authentication authenticated, so ``user_id`` may be left
out, and a caller without a principal (401) or naming another user (403) is refused.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import azure.durable_functions as df
import azure.functions as func
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from memory_core import models
from memory_core.config import Settings
from memory_core.fields import ID_RULE
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
    caller: bool = True  # a memory route: its user is the caller's principal with CALLER_IDENTITY=principal


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
    Endpoint("get", "/health", "Health check", models.HealthResponse, auth="anonymous", errors=(503,), caller=False),
    Endpoint(
        "get", "/stats", "Session pool statistics", models.StatsResponse, auth="admin", errors=(503,), caller=False
    ),
    Endpoint(
        "delete",
        "/users/{user_id}",
        "Forget everything about a user (an id without / \\ # ? %; DELETE /users?user_id= takes any id)",
        models.ForgetResponse,
        auth="admin",
        caller=False,
    ),
    Endpoint(
        "delete",
        "/users",
        "Forget everything about a user (any id, in the query string)",
        models.ForgetResponse,
        query=models.UserQuery,
        auth="admin",
        caller=False,
    ),
    Endpoint(
        "get",
        "/users/{user_id}/export",
        "Export everything stored about a user (an id without / \\ # ? %; GET /users?user_id= takes any id)",
        UserExport,
        auth="admin",
        caller=False,
    ),
    Endpoint(
        "get",
        "/users",
        "Export everything stored about a user (any id, in the query string)",
        UserExport,
        query=models.UserQuery,
        auth="admin",
        caller=False,
    ),
    Endpoint(
        "get",
        "/inspector/users",
        "The users of the most recently active sessions with those sessions (the memory inspector's listing)",
        models.UsersResponse,
        auth="admin",
        errors=(503,),
        caller=False,
    ),
)

AUTH_LEVELS: dict[Auth, func.AuthLevel] = {
    "anonymous": func.AuthLevel.ANONYMOUS,
    "function": func.AuthLevel.FUNCTION,
    "admin": func.AuthLevel.ADMIN,
}


def endpoint(operation: str) -> Endpoint:
    """The endpoint declared for ``operation``, written ``"POST /memory/store"``.

    Raises:
        LookupError: No endpoint of ``ENDPOINTS`` has that method and path.
    """
    method, _, path = operation.partition(" ")
    for candidate in ENDPOINTS:
        if candidate.method == method.lower() and candidate.path == path:
            return candidate
    raise LookupError(f"{operation!r} is not declared in http_api.openapi.ENDPOINTS")


def route(bp: df.Blueprint, operation: str) -> Callable[..., Any]:
    """``bp.route`` for ``operation`` as ``ENDPOINTS`` declares it: its path, method and key level.

    So a route is declared once, in ``ENDPOINTS``, and what the host serves cannot drift from the OpenAPI document;
    an operation missing from the table fails when the blueprint is imported.
    """
    declared = endpoint(operation)
    return bp.route(  # type: ignore[no-any-return]
        route=declared.path.lstrip("/"), methods=[declared.method.upper()], auth_level=AUTH_LEVELS[declared.auth]
    )


_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "function": [{"functionKey": []}, {"functionKeyHeader": []}],
    "admin": [{"functionKey": []}, {"functionKeyHeader": []}],
    "anonymous": [],
}


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """The API as an OpenAPI 3.1 document, with the limits and caller identity of ``settings`` (defaults if None)."""
    limits = {name: int(Settings.model_fields[name].default) for name in models.LIMIT_KEYWORDS}
    principal = False
    if settings is not None:
        limits = models.limits_context(settings)
        principal = settings.CALLER_IDENTITY == "principal"
    return copy.deepcopy(_document(tuple(sorted(limits.items())), principal))


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
def _document(limits: tuple[tuple[str, int], ...], principal: bool = False) -> dict[str, Any]:
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
        bound = principal and e.caller
        if e.auth != "anonymous":
            operation["responses"]["401"] = {
                "description": _PRINCIPAL_401 if bound else _ERROR_TEXT[401],
                "content": {"application/json": {"schema": ref(models.ErrorResponse)}},
            }
        if bound:
            operation["security"] = [{**keys, "easyAuth": []} for keys in _SECURITY[e.auth]]
            operation["responses"]["403"] = {
                "description": _ERROR_TEXT[403],
                "content": {"application/json": {"schema": ref(models.ErrorResponse)}},
            }
            if e.request is not None:
                _principal_user(components[ref(e.request, "validation")["$ref"].rsplit("/", 1)[1]])
        if e.running_status is not None:
            operation["responses"][str(e.running_status)] = {
                "description": "Still running",
                "content": {"application/json": {"schema": ref(e.response)}},
            }
        parameters = _parameters(e.query, "query") if e.query is not None else []
        if bound:
            for parameter in parameters:
                if parameter["name"] == USER_FIELD:
                    parameter["required"] = False
                    parameter["description"] = _PRINCIPAL_USER
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
            "Functions host answers those itself." + (_PRINCIPAL_INFO if principal else ""),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "query", "name": "code"},
                "functionKeyHeader": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                **({"easyAuth": _EASY_AUTH_SCHEME} if principal else {}),
            },
        },
    }
    _apply_limits(document, dict(limits))
    return document


def _principal_user(schema: dict[str, Any]) -> None:
    """A request schema whose ``user_id`` the principal gives: optional, and described so."""
    schema["required"] = [name for name in schema.get("required", []) if name != USER_FIELD]
    if not schema["required"]:
        del schema["required"]
    schema["properties"][USER_FIELD] = {**schema["properties"][USER_FIELD], "description": _PRINCIPAL_USER}


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
    403: "Forbidden: user_id names another user than the authenticated principal (the body names the field)",
    404: "Not found: the session (or the after_turn_id named)",
    409: "Conflict: the session has ended, the session id is taken, or the turn_id was stored with other messages",
    503: "Not ready, or a dependency is unavailable; retry",
}

USER_FIELD = "user_id"
_PRINCIPAL_USER = (
    "The user: the principal App Service Authentication authenticated (X-MS-CLIENT-PRINCIPAL-ID, the Entra object "
    "id) when left out; any other id is a 403. Same rules as every id: " + ID_RULE
)
_PRINCIPAL_401 = (
    "No authenticated principal (CALLER_IDENTITY=principal: a Microsoft Entra ID token, checked by App Service "
    "Authentication in front of the app), or no key or a wrong one. The service and the local host answer with this "
    "body; App Service Authentication and the Functions host answer 401 themselves on Azure, with their own body"
)
_PRINCIPAL_INFO = (
    " Memory routes take their user from the caller (CALLER_IDENTITY=principal): App Service Authentication "
    "validates a Microsoft Entra ID bearer token (easyAuth) before the function key is checked, and passes the "
    "principal on; user_id may be left out, and any user_id other than the principal's is a 403."
)
_EASY_AUTH_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "A Microsoft Entra ID access token for the app registration App Service Authentication is "
    "configured with. Locally, `python -m devhost --easy-auth` takes `devhost-principal:<id>` instead, a stand-in "
    "that only the local host understands.",
}
