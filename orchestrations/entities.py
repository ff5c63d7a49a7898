"""The session entity: the hot pool's bounded state of one session, and the claims that order its compaction.

It is a dispatcher: it validates the operation's input into its model (``orchestrations.payloads``: the one the
orchestrator that sends it builds), applies a pure transition of ``memory_core.session`` and stores the result.
Background work talks to it; the request path never does (it reads and writes the store). Every operation reads its
input only when it has one (an operation signalled without input arrives as null) and answers with plain JSON.
"""

from __future__ import annotations

import logging
from typing import Any

import azure.durable_functions as df
from pydantic import BaseModel

from memory_core import session as rules
from memory_core import telemetry
from memory_core.config import get_settings
from orchestrations import names
from orchestrations.payloads import ApplyCompactionOperation, FinishOperation, SyncOperation
from orchestrations.tracing import carrier_of

logger = logging.getLogger(__name__)

bp = df.Blueprint()


def _raw_input(context: df.DurableEntityContext) -> Any:
    # A private name because the SDK leaves no public way: get_input() runs json.loads on the operation's raw input,
    # which is None for an operation sent without input (get, release_claim, delete), and so raises TypeError
    # (azure/durable_functions/models/DurableEntityContext.py, get_input; azure/durable_functions/entity.py sets
    # context._input from the batch's "input"). tests/unit/test_sdk_private_names.py fails when either changes.
    return context.get_input() if context._input is not None else None


def _dump(model: BaseModel | None) -> Any:
    return None if model is None else model.model_dump(mode="json")


Transition = tuple[rules.HotSession | None, Any, bool]


def session_operation(state: rules.HotSession | None, operation: str, data: Any) -> Transition:
    """Apply one operation to its input as received (validated here into the operation's payload model).

    Returns ``(new state or None to delete, result, state changed)``.

    Operations on a session that is not hot change nothing (and create nothing), except ``sync``, which builds the
    state from the store's snapshot, and ``finish``, which leaves the final, text-free state of an ended session.
    """
    settings = get_settings()
    keep, chunk = settings.K_TURN_BUFFER, settings.L_TURN_CHUNKS
    if operation == names.GET:
        return state, _dump(state), False
    if operation == names.SYNC:
        new_state, claim = rules.sync(state, SyncOperation.model_validate(data), keep, chunk)
        return new_state, _dump(claim), new_state != state
    if operation == names.FINISH:
        done = FinishOperation.model_validate(data)
        return rules.finish(state, done.user_id, done.session_id, done.now), None, True
    if operation == names.DELETE:
        return None, None, state is not None
    if operation not in (names.APPLY_COMPACTION, names.RELEASE_CLAIM):
        raise ValueError(f"Unknown operation {operation!r} of the session entity")
    if state is None:
        return None, None, False
    if operation == names.APPLY_COMPACTION:
        new_state, claim = rules.apply_compaction(state, ApplyCompactionOperation.model_validate(data), keep, chunk)
        return new_state, _dump(claim), new_state != state
    return rules.release_claim(state), None, True


@bp.entity_trigger(context_name="context", entity_name=names.SESSION_ENTITY)
def session_entity(context: df.DurableEntityContext) -> None:
    """One session's hot state: the pure transitions of ``memory_core.session``."""
    data = _raw_input(context)
    attrs = {"durable.entity.name": names.SESSION_ENTITY, "durable.entity.operation": context.operation_name}
    # The trace is read before the input is validated, so that a malformed input's failure is in the sender's trace.
    with (
        telemetry.remote_parent(carrier_of(data), override=True),
        telemetry.span(f"entity session.{context.operation_name}", attributes=attrs),
    ):
        _run_operation(context, data)


def _run_operation(context: df.DurableEntityContext, data: Any) -> None:
    raw = context.get_state(lambda: None)
    state = rules.HotSession.model_validate(raw) if raw else None
    new_state, result, changed = session_operation(state, context.operation_name, data)
    # set_result marks the entity as existing, so it goes first: an operation on a session that is not hot must
    # not leave an empty entity behind.
    context.set_result(result)
    if new_state is None:
        context.destruct_on_exit()
    elif changed:
        context.set_state(new_state.model_dump(mode="json"))
