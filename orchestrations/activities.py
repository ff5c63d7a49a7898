"""Activities: each decodes its JSON input, calls one ``MemoryService`` operation and returns JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df

from memory_core.domain import SessionStatus, Turn
from memory_core.runtime import get_service
from memory_core.session import Compaction, SessionState
from orchestrations import names

bp = df.Blueprint()


@bp.activity_trigger(input_name="job", activity=names.LOAD_SESSION_ACTIVITY)
async def load_session(job: dict[str, Any]) -> dict[str, Any]:
    """Rebuild an evicted session's hot state from the store."""
    service = await get_service()
    state = await service.open_session(job["user_id"], job["session_id"], restore=True, now=datetime.now(UTC))
    return state.model_dump(mode="json")


@bp.activity_trigger(input_name="turn", activity=names.PERSIST_TURN_ACTIVITY)
async def persist_turn(turn: dict[str, Any]) -> None:
    """Write a turn and its embedding to the store."""
    service = await get_service()
    await service.persist_turn(Turn.model_validate(turn))


@bp.activity_trigger(input_name="job", activity=names.COMPACT_ACTIVITY)
async def compact_chunk(job: dict[str, Any]) -> str:
    """Write a chunk and return the new cumulative summary."""
    service = await get_service()
    return await service.compact(Compaction.model_validate(job["compaction"]), datetime.fromisoformat(job["now"]))


@bp.activity_trigger(input_name="job", activity=names.SAVE_SESSION_ACTIVITY)
async def save_session(job: dict[str, Any]) -> None:
    """Write a session's hot turns and its record (idle: restorable; ended: final) to the store."""
    service = await get_service()
    state = SessionState.model_validate(job["state"]) if job.get("state") else None
    await service.save_session(job["user_id"], job["session_id"], state, SessionStatus(job["status"]))


@bp.activity_trigger(input_name="job", activity=names.REFLECT_ACTIVITY)
async def reflect(job: dict[str, Any]) -> dict[str, Any]:
    """Summarise the session and consolidate its insights."""
    service = await get_service()
    outcome = await service.reflect(job["user_id"], job["session_id"], datetime.fromisoformat(job["now"]))
    return outcome.model_dump(mode="json")
