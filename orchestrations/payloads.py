"""What orchestrators, activities and the session entity send each other: pydantic models, validated on entry.

The sender builds the model and sends its JSON dump; the receiver validates the JSON into the same model on its first
line (activities, the entity's operations) or as it takes a task's result (orchestrators). Every payload is small
(ids, counters, a bounded summary): turn texts never ride a Durable message, they are read from the store by the
activity that needs them.

Inputs: ``BatchJob``, ``CompactJob``, ``EvictJob``, ``ReflectJob`` (activities; ``BatchJob``, ``SessionRef`` and
``EvictJob`` also start orchestrations); ``SyncOperation``, ``ApplyCompactionOperation``, ``FinishOperation`` (the
session entity's operations that carry input; ``get``, ``release_claim`` and ``delete`` carry none). Results:
``SessionSnapshot`` (index), ``CompactionDone`` (compact), ``ReflectionOutcome`` (reflect), a plain bool (evict),
``Claim`` or null (the entity's ``sync`` and ``apply_compaction``), ``BatchOutcome`` and ``EvictionOutcome``
(orchestrations).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer

from memory_core.session import Claim, CompactionDone, SessionSnapshot


class Traced(BaseModel):
    """A payload that may carry the W3C trace context of who sent it (``traceparent``, ``tracestate``).

    Left out of the JSON when there is none, so payloads outside a trace are what they always were.
    """

    model_config = ConfigDict(frozen=True)

    trace: dict[str, str] | None = None

    @model_serializer(mode="wrap")
    def _without_empty_trace(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and not data.get("trace"):
            data.pop("trace", None)
        return data


class SessionRef(Traced):
    """Which session a job is about."""

    user_id: str
    session_id: str


class BatchJob(SessionRef):
    """Index the session's turns up to ``through_seq`` (all of them when None) and compact what is due."""

    through_seq: int | None = None


class CompactJob(Traced):
    """Compact one claimed chunk; ``now`` is the orchestration's time."""

    claim: Claim
    now: datetime


class EvictJob(SessionRef):
    """Evict the session if nothing happened in it after ``cutoff``."""

    cutoff: datetime


class ReflectJob(SessionRef):
    """Reflect on the ended session; ``now`` is the orchestration's time."""

    now: datetime


class SyncOperation(Traced, SessionSnapshot):
    """The session entity's ``sync`` operation: the store's snapshot of the session (the index activity's result).

    On the wire: the snapshot's fields, and ``trace`` beside them when there is one.
    """


class ApplyCompactionOperation(Traced, CompactionDone):
    """The session entity's ``apply_compaction`` operation: a compaction step's outcome (the compact activity's result).

    On the wire: the outcome's fields, and ``trace`` beside them when there is one.
    """


class FinishOperation(SessionRef):
    """The session entity's ``finish`` operation: the session ended; its reflection finished at ``now``."""

    now: datetime


class BatchOutcome(SessionRef):
    """What a batch did: through which turn it indexed and how many chunks it compacted."""

    indexed_through: int = 0
    chunks_compacted: int = 0
    skipped: str | None = None


class EvictionOutcome(BaseModel):
    """What an eviction did: whether the session was marked idle (its entity is then deleted)."""

    model_config = ConfigDict(frozen=True)

    evicted: bool
