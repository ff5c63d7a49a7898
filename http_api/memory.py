"""The guide's endpoints: sessions, memory, insights and summaries (function-level keys on Azure)."""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from http_api.responses import parse_body, respond
from memory_core import api
from memory_core.models import (
    ContextRequest,
    EndSessionRequest,
    InsightsRequest,
    RetrieveRequest,
    StartSessionRequest,
    StoreTurnRequest,
    StoreTurnResponse,
    SummariesRequest,
)
from orchestrations.host import DurableSessionHost

bp = df.Blueprint()


@bp.route(route="sessions/start", methods=["POST"])
async def start_session(req: func.HttpRequest) -> func.HttpResponse:
    """Start a session, or restore an existing one, and return its context."""
    return await respond(req, lambda s: api.start_session(s, parse_body(req, StartSessionRequest, s)))


@bp.route(route="sessions/end", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def end_session(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """End a session and start its reflection; 202 with the reflection's status URLs."""
    host = DurableSessionHost(client)
    return await respond(req, lambda s: api.end_session(s, host, parse_body(req, EndSessionRequest, s)), 202)


@bp.route(route="memory/context", methods=["POST"])
async def get_context(req: func.HttpRequest) -> func.HttpResponse:
    """The session's ready-to-inject context, with every turn stored so far."""
    return await respond(req, lambda s: api.get_context(s, parse_body(req, ContextRequest, s)))


@bp.route(route="memory/store", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def store_turn(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Store one turn: 201 once it is durable, 200 for a repeat of a stored turn_id."""
    host = DurableSessionHost(client)
    return await respond(req, lambda s: api.store_turn(s, host, parse_body(req, StoreTurnRequest, s)), _stored_status)


def _stored_status(response: StoreTurnResponse) -> int:
    return 200 if response.duplicate else 201


@bp.route(route="memory/retrieve", methods=["POST"])
async def retrieve(req: func.HttpRequest) -> func.HttpResponse:
    """Hybrid search over the user's memory."""
    return await respond(req, lambda s: s.retrieve(parse_body(req, RetrieveRequest, s)))


@bp.route(route="insights", methods=["POST"])
async def insights(req: func.HttpRequest) -> func.HttpResponse:
    """The user's long-term insights."""
    return await respond(req, lambda s: s.insights(parse_body(req, InsightsRequest, s)))


@bp.route(route="summaries", methods=["POST"])
async def summaries(req: func.HttpRequest) -> func.HttpResponse:
    """The user's session summaries, newest first."""
    return await respond(req, lambda s: s.summaries(parse_body(req, SummariesRequest, s)))
