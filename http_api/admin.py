"""Monitoring and user-data endpoints: health (anonymous), stats, export and forget (admin keys on Azure)."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from http_api.openapi import openapi_document, route
from http_api.responses import error_response, json_response, parse_query, respond
from memory_core import use_cases
from memory_core.config import get_settings
from memory_core.errors import MemoryServiceError
from memory_core.models import UserQuery, UserRef
from orchestrations.host import DurableSessionHost

bp = df.Blueprint()


@route(bp, "GET /health")
async def health(req: func.HttpRequest) -> func.HttpResponse:
    """Whether the service is up, and what it runs on."""
    return await respond(req, use_cases.health)


@route(bp, "GET /stats")
async def stats(req: func.HttpRequest) -> func.HttpResponse:
    """The hot pool's statistics."""
    return await respond(req, use_cases.stats)


# A user id travels in the path (/users/{user_id}) only when no server or proxy can read it differently: without a
# slash, backslash, # ? or % (the Functions host decodes every escape of a path but %2F, so "a%2Fb" could be "a/b" or
# "a%2Fb"); the query forms (DELETE and GET /users?user_id=...) take any id.


@route(bp, "DELETE /users/{user_id}")
@bp.durable_client_input(client_name="client")
async def forget_user(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Delete everything of a user named in the path."""
    host = DurableSessionHost(client)
    return await respond(
        req, lambda s: use_cases.forget_user(s, host, UserRef.model_validate(dict(req.route_params)).user_id)
    )


@route(bp, "DELETE /users")
@bp.durable_client_input(client_name="client")
async def forget_user_by_query(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Delete everything of a user named in the query string (any id)."""
    host = DurableSessionHost(client)
    return await respond(req, lambda s: use_cases.forget_user(s, host, parse_query(req, UserQuery, s).user_id))


@route(bp, "GET /users/{user_id}/export")
async def export_user(req: func.HttpRequest) -> func.HttpResponse:
    """Everything stored about a user named in the path, as JSON."""
    return await respond(
        req, lambda s: use_cases.export_user(s, UserRef.model_validate(dict(req.route_params)).user_id)
    )


@route(bp, "GET /users")
async def export_user_by_query(req: func.HttpRequest) -> func.HttpResponse:
    """Everything stored about a user named in the query string (any id), as JSON."""
    return await respond(req, lambda s: use_cases.export_user(s, parse_query(req, UserQuery, s).user_id))


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """The OpenAPI 3.1 description of this API, with the limits of the configured settings."""
    try:
        settings = get_settings()
    except MemoryServiceError as exc:  # a bad setting: the same answer as every other endpoint
        return error_response(503, "ServiceUnavailable", f"Session pool not initialized: {exc.detail}")
    return json_response(openapi_document(settings))
