"""The guide's endpoints: sessions, memory, insights and summaries (function-level keys on Azure).

Every route here is a memory route: it parses with ``caller=True``, so with ``CALLER_IDENTITY=principal`` its user is
the principal App Service Authentication authenticated (``http_api.principal``).
"""

from __future__ import annotations

from urllib.parse import urlencode

import azure.durable_functions as df
import azure.functions as func

from http_api.openapi import endpoint, route
from http_api.responses import parse_body, parse_query, respond, route_url
from memory_core import use_cases
from memory_core.models import (
    ContextRequest,
    EndSessionRequest,
    EndSessionResponse,
    InsightsRequest,
    ReflectionStatusRequest,
    RetrieveRequest,
    StartSessionRequest,
    StoreTurnRequest,
    StoreTurnResponse,
    SummariesRequest,
)
from memory_core.service import MemoryService
from orchestrations.host import DurableSessionHost

bp = df.Blueprint()


@route(bp, "POST /sessions/start")
async def start_session(req: func.HttpRequest) -> func.HttpResponse:
    """Start a session, or restore an existing one, and return its context."""
    return await respond(
        req, lambda s: use_cases.start_session(s, parse_body(req, StartSessionRequest, s, caller=True))
    )


REFLECTION_ROUTE = endpoint("GET /sessions/reflection").path.lstrip("/")


@route(bp, "POST /sessions/end")
@bp.durable_client_input(client_name="client")
async def end_session(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """End a session and start its reflection; 202 with the URL of its status on this service."""
    host = DurableSessionHost(client)

    async def end(service: MemoryService) -> EndSessionResponse:
        ended = await use_cases.end_session(service, host, parse_body(req, EndSessionRequest, service, caller=True))
        query = urlencode({"user_id": ended.user_id, "session_id": ended.session_id})
        return ended.model_copy(update={"statusQueryGetUri": f"{route_url(req, REFLECTION_ROUTE)}?{query}"})

    return await respond(req, end, 202)


@route(bp, "GET /sessions/reflection")
@bp.durable_client_input(client_name="client")
async def reflection_status(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """The session's reflection in Durable's status shape: 202 while it runs, 200 once it is done."""
    host = DurableSessionHost(client)
    return await respond(
        req,
        lambda s: use_cases.reflection_status(host, parse_query(req, ReflectionStatusRequest, s, caller=True)),
        lambda status: 200 if status.finished else 202,
    )


@route(bp, "POST /memory/context")
async def get_context(req: func.HttpRequest) -> func.HttpResponse:
    """The session's ready-to-inject context, with every turn stored so far."""
    return await respond(req, lambda s: use_cases.get_context(s, parse_body(req, ContextRequest, s, caller=True)))


@route(bp, "POST /memory/store")
@bp.durable_client_input(client_name="client")
async def store_turn(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Store one turn: 201 once it is durable, 200 for a repeat of a stored turn_id."""
    host = DurableSessionHost(client)
    return await respond(
        req, lambda s: use_cases.store_turn(s, host, parse_body(req, StoreTurnRequest, s, caller=True)), _stored_status
    )


def _stored_status(response: StoreTurnResponse) -> int:
    return 200 if response.duplicate else 201


@route(bp, "POST /memory/retrieve")
async def retrieve(req: func.HttpRequest) -> func.HttpResponse:
    """Hybrid search over the user's memory."""
    return await respond(req, lambda s: use_cases.retrieve(s, parse_body(req, RetrieveRequest, s, caller=True)))


@route(bp, "POST /insights")
async def insights(req: func.HttpRequest) -> func.HttpResponse:
    """The user's long-term insights."""
    return await respond(req, lambda s: use_cases.insights(s, parse_body(req, InsightsRequest, s, caller=True)))


@route(bp, "POST /summaries")
async def summaries(req: func.HttpRequest) -> func.HttpResponse:
    """The user's session summaries, newest first."""
    return await respond(req, lambda s: use_cases.summaries(s, parse_body(req, SummariesRequest, s, caller=True)))
