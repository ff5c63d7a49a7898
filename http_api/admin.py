"""Monitoring and user-data endpoints: health (anonymous), stats, export and forget (admin keys on Azure)."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from http_api.responses import json_response, respond
from memory_core import api
from memory_core.models import UserRef
from memory_core.openapi import openapi_document
from orchestrations.host import DurableSessionHost

bp = df.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    """Whether the service is up, and what it runs on."""
    return await respond(req, api.health)


@bp.route(route="stats", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def stats(req: func.HttpRequest) -> func.HttpResponse:
    """The hot pool's statistics."""
    return await respond(req, api.stats)


@bp.route(route="users/{user_id}", methods=["DELETE"], auth_level=func.AuthLevel.ADMIN)
@bp.durable_client_input(client_name="client")
async def forget_user(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Delete everything of a user."""
    host = DurableSessionHost(client)
    return await respond(req, lambda s: api.forget_user(s, host, UserRef.model_validate(req.route_params).user_id))


@bp.route(route="users/{user_id}/export", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def export_user(req: func.HttpRequest) -> func.HttpResponse:
    """Everything stored about a user, as JSON."""
    return await respond(req, lambda s: api.export_user(s, UserRef.model_validate(req.route_params).user_id))


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """The OpenAPI 3.1 description of this API."""
    return json_response(openapi_document())
