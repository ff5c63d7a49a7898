"""Names of every Durable function and operation, and the deterministic ids of entities and instances."""

from __future__ import annotations

import hashlib

import azure.durable_functions as df

# entities and their operations
SESSION_ENTITY = "session"
POOL_ENTITY = "pool"
POOL_KEY = "hot"

GET = "get"
LOAD = "load"
APPEND = "append"
APPLY_COMPACTION = "apply_compaction"
RELEASE_CLAIM = "release_claim"
END = "end"
EVICT = "evict"
DELETE_IF_UNCHANGED = "delete_if_unchanged"
DELETE = "delete"  # also what DELETE entities/{name}/{key} on the Durable HTTP API sends
TOUCH = "touch"
REMOVE = "remove"
CLEANED = "cleaned"

# orchestrators
INGEST_ORCHESTRATOR = "ingest_turn"
REFLECTION_ORCHESTRATOR = "reflect_session"
EVICTION_ORCHESTRATOR = "evict_session"

# activities
LOAD_SESSION_ACTIVITY = "load_session"
PERSIST_TURN_ACTIVITY = "persist_turn"
COMPACT_ACTIVITY = "compact_chunk"
SAVE_SESSION_ACTIVITY = "save_session"
REFLECT_ACTIVITY = "reflect"


def _digest(*parts: str, size: int = 24) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:size]


def session_key(user_id: str, session_id: str) -> str:
    """The session entity's key: readable and unambiguous (the user id's length says where it ends)."""
    return f"{len(user_id)}.{user_id}.{session_id}"


def session_entity(user_id: str, session_id: str) -> df.EntityId:
    """The session entity of a user's session."""
    return df.EntityId(SESSION_ENTITY, session_key(user_id, session_id))


def pool_entity() -> df.EntityId:
    """The one pool entity."""
    return df.EntityId(POOL_ENTITY, POOL_KEY)


def user_prefix(user_id: str) -> str:
    """Every orchestration instance of a user starts with this, so forgetting a user finds them all."""
    return f"u{_digest(user_id, size=16)}-"


def ingest_instance_id(user_id: str, session_id: str, turn_id: str) -> str:
    """One ingest per turn: a retried store request finds the same instance."""
    return f"{user_prefix(user_id)}ingest-{_digest(session_id, turn_id)}"


def reflection_instance_id(user_id: str, session_id: str) -> str:
    """One reflection per session."""
    return f"{user_prefix(user_id)}reflect-{_digest(session_id)}"


def eviction_instance_id(user_id: str, session_id: str, tick: str) -> str:
    """One eviction per session and cleanup run."""
    return f"{user_prefix(user_id)}evict-{_digest(session_id, tick)}"
