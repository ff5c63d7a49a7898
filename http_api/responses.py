"""Parsing requests and mapping results and errors to HTTP responses: one table for every endpoint."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import azure.functions as func
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ValidationError

from http_api.principal import bind_user, principal_id
from memory_core import telemetry
from memory_core.errors import (
    ConfigurationError,
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    MemoryServiceError,
    ModelOutputError,
    NotFoundError,
    SessionEndedError,
    UnauthenticatedError,
    UpstreamUnavailableError,
)
from memory_core.models import ErrorResponse, limits_context
from memory_core.runtime import get_service
from memory_core.service import MemoryService

logger = logging.getLogger(__name__)

_Request = TypeVar("_Request", bound=BaseModel)
_Result = TypeVar("_Result", bound=BaseModel)
_T = TypeVar("_T")

# memory_core errors -> HTTP status. The first matching class (in method resolution order) wins.
STATUS: dict[type[MemoryServiceError], int] = {
    InvalidRequestError: 400,
    UnauthenticatedError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    SessionEndedError: 409,
    ConflictError: 409,
    ModelOutputError: 502,
    UpstreamUnavailableError: 503,
    ConfigurationError: 500,
    MemoryServiceError: 500,
}

MAX_BODY_BYTES = 1_048_576


def json_response(body: BaseModel | dict[str, object], status_code: int = 200) -> func.HttpResponse:
    """A JSON response."""
    text = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body)
    return func.HttpResponse(text, status_code=status_code, mimetype="application/json", charset="utf-8")


def error_response(status_code: int, error: str, detail: str, field: str | None = None) -> func.HttpResponse:
    """The JSON error body every 4xx and 5xx carries."""
    response = json_response(ErrorResponse(error=error, detail=detail, field=field), status_code)
    if status_code == 503:
        response.headers["Retry-After"] = "1"
    if status_code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"  # the token App Service Authentication takes
    return response


def _status_of(exc: MemoryServiceError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _validation_failure(exc: ValidationError) -> Failure:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )
    return Failure(400, ErrorResponse(error="ValidationError", detail=problems, field=field))


def parse_body(
    req: func.HttpRequest, model: type[_Request], service: MemoryService, *, caller: bool = False
) -> _Request:
    """The request body validated against ``model`` with the configured limits.

    ``caller``: a memory route, whose user is the caller with ``CALLER_IDENTITY=principal`` (see ``caller_bound``).
    """
    principal = caller_principal(req.headers, service) if caller else None
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequestError(f"Body must be at most {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body) if body.strip() else None
    except (ValueError, RecursionError):  # RecursionError: nested too deep for the decoder
        raise InvalidRequestError("Body must be JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("Body must be a JSON object")
    return parse_fields(data, model, service, principal)


# The query parameter that carries a function key on Azure (the host reads it; it is no input of a use case).
KEY_PARAMETER = "code"


def parse_query(
    req: func.HttpRequest, model: type[_Request], service: MemoryService, *, caller: bool = False
) -> _Request:
    """The query string validated against ``model`` with the configured limits (the first value of each name).

    The function key's parameter (``code``) is the host's, not the request's: it is left out. ``caller``: as for
    ``parse_body``.
    """
    principal = caller_principal(req.headers, service) if caller else None
    params = {name: value for name, value in req.params.items() if name != KEY_PARAMETER}
    return parse_fields(params, model, service, principal)


def parse_fields(
    data: dict[str, Any], model: type[_Request], service: MemoryService, principal: str | None
) -> _Request:
    """A request's fields validated against ``model`` with the configured limits, its user bound to ``principal``."""
    return model.model_validate(caller_bound(data, principal), context=limits_context(service.settings))


def caller_principal(headers: Mapping[str, str], service: MemoryService) -> str | None:
    """The authenticated principal's id with ``CALLER_IDENTITY=principal`` (401 without one), else None."""
    return principal_id(headers) if service.settings.CALLER_IDENTITY == "principal" else None


def caller_bound(data: dict[str, Any], principal: str | None) -> dict[str, Any]:
    """The request's fields with its user bound to ``principal`` (None: as the request names it).

    With a principal, a ``user_id`` the request leaves out is the principal's, and one of another user is a 403
    (``http_api.principal``). Checked before the fields are validated, and after the principal (a 401 comes first).
    """
    return data if principal is None else bind_user(data, principal)


def route_url(req: func.HttpRequest, route: str) -> str:
    """The absolute URL of one of this app's routes, on the scheme and host the request came in on."""
    parts = urlsplit(req.url)
    return str(urlunsplit((parts.scheme, parts.netloc, "/" + route.lstrip("/"), "", "")))


@dataclass(frozen=True)
class Failure:
    """What a use case's error answers: the HTTP status and the JSON error body (``STATUS``, the one table)."""

    status: int
    body: ErrorResponse


async def run_use_case(call: Callable[[MemoryService], Awaitable[_T]], label: str) -> _T | Failure:
    """Run one use case on the shared service: its result, or its error as the API answers it.

    Never a 5xx for a client's mistake. ``label`` names the request in the log (``POST /memory/store``...). The
    HTTP routes answer a ``Failure`` as a JSON error body (``respond``), the MCP tools as a tool error.
    """
    try:
        service = await get_service()
    except Exception as exc:  # the guide's "Session pool not initialized": settings, store or model set-up failed
        logger.exception("Service initialisation failed")
        detail = exc.detail if isinstance(exc, MemoryServiceError) else "see the service logs"
        return Failure(503, ErrorResponse(error="ServiceUnavailable", detail=f"Session pool not initialized: {detail}"))
    try:
        return await call(service)
    except ValidationError as exc:
        return _validation_failure(exc)
    except MemoryServiceError as exc:
        status = _status_of(exc)
        if status >= 500:
            logger.warning("%s failed: %s: %s", label, type(exc).__name__, exc.detail)
        return Failure(status, ErrorResponse(error=type(exc).__name__, detail=exc.detail, field=exc.field))
    except Exception:
        logger.exception("%s failed", label)
        return Failure(
            500, ErrorResponse(error="InternalError", detail="The service failed to handle the request; see its logs")
        )


async def respond(
    req: func.HttpRequest,
    call: Callable[[MemoryService], Awaitable[_Result]],
    status_code: int | Callable[[_Result], int] = 200,
) -> func.HttpResponse:
    """Run one use case and map its result, or its error, to a response. Never a 5xx for a client's mistake.

    ``status_code`` is the success status, or a function of the result that gives it.
    """

    async def answer(service: MemoryService) -> func.HttpResponse:
        result = await call(service)
        return json_response(result, status_code(result) if callable(status_code) else status_code)

    route, started = route_template(req), time.perf_counter()
    attrs = {"http.request.method": req.method, "http.route": route}
    with telemetry.remote_parent(req.headers), telemetry.span(f"{req.method} {route}", SpanKind.SERVER, attrs) as span:
        outcome = await run_use_case(answer, f"{req.method} {req.url}")
        if isinstance(outcome, Failure):
            body = outcome.body
            outcome = error_response(outcome.status, body.error, body.detail, body.field)
            span.set_attribute("error.type", body.error)
        span.set_attribute("http.response.status_code", outcome.status_code)
    status = {"http.response.status_code": outcome.status_code}
    telemetry.REQUEST_DURATION.record(time.perf_counter() - started, {**attrs, **status})
    return outcome


def route_template(req: func.HttpRequest) -> str:
    """The request's route with its parameters as ``{name}`` (``/users/{user_id}``): ids stay out of telemetry."""
    path = urlsplit(req.url).path or "/"
    for name, value in req.route_params.items():
        if value:
            path = path.replace(quote(value, safe=""), "{" + name + "}").replace(value, "{" + name + "}")
    return path
