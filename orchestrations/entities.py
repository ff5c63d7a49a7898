"""The session entity (the hot pool's per-session state) and the pool entity (which sessions are hot).

Both are dispatchers: they decode the operation's input, apply a pure transition from ``memory_core`` and store
the result. Every operation reads its input only when it has one (an operation signalled without input arrives as
null), and answers with plain JSON.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import azure.durable_functions as df
from pydantic import BaseModel

from memory_core import pool as pool_rules
from memory_core import session as rules
from memory_core.config import get_settings
from memory_core.errors import SessionEndedError
from orchestrations import names

logger = logging.getLogger(__name__)

bp = df.Blueprint()


def _input(context: df.DurableEntityContext) -> Any:
    # The SDK's get_input() fails on an operation sent without input; such operations carry none.
    return context.get_input() if context._input is not None else None


def _dump(model: BaseModel | None) -> Any:
    return None if model is None else model.model_dump(mode="json")


class AppendReply(BaseModel):
    """What ``append`` answers: the result, or that the session is not hot, or that it has ended."""

    missing: bool = False
    ended: bool = False
    result: rules.AppendResult | None = None


_SESSION_OPERATIONS = frozenset(
    {
        names.GET,
        names.LOAD,
        names.APPEND,
        names.APPLY_COMPACTION,
        names.RELEASE_CLAIM,
        names.END,
        names.EVICT,
        names.DELETE_IF_UNCHANGED,
        names.DELETE,
    }
)


def session_operation(state: rules.SessionState | None, operation: str, data: Any) -> tuple[Any, Any, bool]:
    """Apply one operation: ``(new state or None to delete, result, state changed)``."""
    if operation not in _SESSION_OPERATIONS:  # also when the session is not hot, where nothing below would say so
        raise ValueError(f"Unknown operation {operation!r} of the session entity")
    settings = get_settings()
    keep, chunk = settings.K_TURN_BUFFER, settings.L_TURN_CHUNKS
    if operation == names.GET:
        return state, _dump(state), False
    if operation == names.LOAD:
        # A hot state is never older than one rebuilt from the store, so an existing state wins.
        if state is None:
            # "restored" tells the request that rebuilt the state; once hot, later requests find it hot.
            state = rules.SessionState.model_validate(data).model_copy(update={"restored": False})
            return state, _dump(state), True
        return state, _dump(state), False
    if operation == names.DELETE:
        return None, None, True
    if state is None:
        if operation == names.APPEND:
            return None, AppendReply(missing=True).model_dump(mode="json"), False
        return None, None, False
    if operation == names.APPEND:
        turn = rules.TurnInput.model_validate(data)
        try:
            state, result = rules.append_turn(state, turn, keep, chunk, turn.received_at or turn.timestamp)
        except SessionEndedError:
            return state, AppendReply(ended=True).model_dump(mode="json"), False
        return state, AppendReply(result=result).model_dump(mode="json"), not result.duplicate
    if operation == names.APPLY_COMPACTION:
        state, nxt = rules.apply_compaction(
            state, data["index"], data["through_seq"], data["summary"], chunk, flush=False
        )
        return state, _dump(nxt), True
    if operation == names.RELEASE_CLAIM:
        return rules.release_claim(state), None, True
    if operation == names.END:
        state = rules.end_session(state, datetime.fromisoformat(data["now"]))
        return state, _dump(state), True
    if operation == names.EVICT:
        idle = rules.idle_since(state, datetime.fromisoformat(data["cutoff"]))
        return state, {"idle": idle, "state": _dump(state)}, False
    if operation == names.DELETE_IF_UNCHANGED:
        unchanged = state.turn_count == data["turn_count"] and state.status != "ended"
        return (None if unchanged else state), unchanged, unchanged
    raise ValueError(f"Unknown operation {operation!r} of the session entity")


@bp.entity_trigger(context_name="context", entity_name=names.SESSION_ENTITY)
def session_entity(context: df.DurableEntityContext) -> None:
    """One session's hot state: the pure transitions of ``memory_core.session``."""
    raw = context.get_state(lambda: None)
    state = rules.SessionState.model_validate(raw) if raw else None
    new_state, result, changed = session_operation(state, context.operation_name, _input(context))
    # set_result marks the entity as existing, so it goes first: an operation on a session that is not hot must
    # not leave an empty entity behind.
    context.set_result(result)
    if new_state is None:
        context.destruct_on_exit()
    elif changed:
        context.set_state(new_state.model_dump(mode="json"))


def pool_operation(pool: pool_rules.PoolState, operation: str, data: Any) -> tuple[pool_rules.PoolState, Any]:
    """Apply one operation to the pool: ``(new pool, result)``."""
    if operation == names.TOUCH:
        return pool_rules.touch(pool, data["key"], pool_rules.PoolEntry.model_validate(data["entry"])), None
    if operation == names.REMOVE:
        return pool_rules.remove(pool, data["key"]), None
    if operation == names.CLEANED:
        return pool.model_copy(update={"last_cleanup": datetime.fromisoformat(data["now"])}), None
    if operation == names.GET:
        return pool, pool.model_dump(mode="json")
    if operation == names.DELETE:
        return pool_rules.PoolState(), None
    raise ValueError(f"Unknown operation {operation!r} of the pool entity")


@bp.entity_trigger(context_name="context", entity_name=names.POOL_ENTITY)
def pool_entity(context: df.DurableEntityContext) -> None:
    """Which sessions are hot, with their activity: read by /stats and the cleanup timer."""
    raw = context.get_state(lambda: None)
    pool = pool_rules.PoolState.model_validate(raw) if raw else pool_rules.PoolState()
    pool, result = pool_operation(pool, context.operation_name, _input(context))
    context.set_result(result)
    context.set_state(pool.model_dump(mode="json"))
