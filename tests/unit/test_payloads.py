"""The payloads of the session entity's operations: one model per operation, the same JSON as before on the wire."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from memory_core import session as rules
from memory_core.domain import Turn
from memory_core.session import CompactionDone, HotSession, SessionSnapshot
from orchestrations import names
from orchestrations.entities import session_operation
from orchestrations.payloads import ApplyCompactionOperation, EvictionOutcome, FinishOperation, SyncOperation

T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
TRACE = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}


def snapshot(turn_count: int) -> SessionSnapshot:
    record = rules.new_record("u1", "s1", T0).model_copy(
        update={"turn_count": turn_count, "indexed_through": turn_count}
    )
    turns = [
        Turn(user_id="u1", session_id="s1", seq=n, turn_id=f"t{n}", user_message="m", agent_message="r", timestamp=T0)
        for n in range(1, turn_count + 1)
    ]
    return SessionSnapshot.of(record, turns)


@pytest.mark.parametrize("trace", [None, TRACE])
def test_sync_sends_the_snapshots_fields_and_the_trace_beside_them(trace: dict[str, str] | None) -> None:
    source = snapshot(3)
    sent = SyncOperation(**dict(source), trace=trace).model_dump(mode="json")
    # The shape the session entity has always been sent (task hubs hold such messages).
    assert sent == {**source.model_dump(mode="json"), **({"trace": trace} if trace else {})}
    received = SyncOperation.model_validate(sent)
    assert isinstance(received, SessionSnapshot) and received.trace == trace
    assert SessionSnapshot.model_validate(sent) == source


@pytest.mark.parametrize("trace", [None, TRACE])
def test_apply_compaction_sends_the_outcomes_fields_and_the_trace_beside_them(trace: dict[str, str] | None) -> None:
    done = CompactionDone(chunk_count=1, through_seq=10, summary="through 10")
    sent = ApplyCompactionOperation(**dict(done), trace=trace).model_dump(mode="json")
    assert sent == {"chunk_count": 1, "through_seq": 10, "summary": "through 10", **({"trace": trace} if trace else {})}
    assert CompactionDone.model_validate(ApplyCompactionOperation.model_validate(sent).model_dump()) == done


def test_the_entity_takes_what_the_orchestrator_builds_and_refuses_what_it_does_not() -> None:
    state, _, changed = session_operation(
        None, names.SYNC, SyncOperation(**dict(snapshot(3)), trace=TRACE).model_dump(mode="json")
    )
    assert isinstance(state, HotSession) and state.turn_count == 3 and changed
    finish = FinishOperation(user_id="u1", session_id="s1", now=T0, trace=TRACE).model_dump(mode="json")
    ended, _, _ = session_operation(state, names.FINISH, finish)
    assert ended is not None and ended.status == "ended"
    for operation, data in [
        (names.SYNC, None),
        (names.SYNC, {"turn_count": "many"}),
        (names.FINISH, {"user_id": "u1"}),
        (names.APPLY_COMPACTION, {"chunk_count": 1}),
    ]:
        with pytest.raises(ValidationError):
            session_operation(state, operation, data)


def test_an_eviction_reports_whether_it_evicted() -> None:
    assert EvictionOutcome(evicted=True).model_dump(mode="json") == {"evicted": True}
