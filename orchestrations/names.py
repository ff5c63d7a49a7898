"""Names of every Durable function and operation, and the deterministic ids of entities and instances."""

from __future__ import annotations

import hashlib

import azure.durable_functions as df

# the session entity and its operations
SESSION_ENTITY = "session"

GET = "get"
SYNC = "sync"
APPLY_COMPACTION = "apply_compaction"
RELEASE_CLAIM = "release_claim"
FINISH = "finish"
DELETE = "delete"  # also what DELETE entities/{name}/{key} on the Durable HTTP API sends

# orchestrators
BATCH_ORCHESTRATOR = "process_turns"
REFLECTION_ORCHESTRATOR = "reflect_session"
EVICTION_ORCHESTRATOR = "evict_session"

# activities
INDEX_ACTIVITY = "index_turns"
COMPACT_ACTIVITY = "compact_chunk"
EVICT_ACTIVITY = "evict"
REFLECT_ACTIVITY = "reflect"


# Ids are any strings of printable characters (memory_core.fields): instance ids and entity keys never hold them, only
# hex digests of them (SHA-256), so every key is short, of fixed shape, and free of what the task hub's storage refuses
# in keys (Azure Table keys: slash, backslash, # and ?, control characters; at most 1 KiB).


def _digest(*parts: str, size: int = 24) -> str:
    # Ids hold no control characters, so the separator U+001F makes the joined text unambiguous.
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:size]


def user_prefix(user_id: str) -> str:
    """Every orchestration instance of a user starts with this, so forgetting a user finds them all."""
    return f"u{_digest(user_id, size=16)}-"


def user_entity_prefix(user_id: str) -> str:
    """Every session entity key of a user starts with this, so forgetting a user finds them all."""
    return user_prefix(user_id)


def session_key(user_id: str, session_id: str) -> str:
    """The session entity's key: the user's prefix and a 128-bit digest of user and session (51 characters)."""
    return f"{user_entity_prefix(user_id)}s{_digest(user_id, session_id, size=32)}"


def session_entity(user_id: str, session_id: str) -> df.EntityId:
    """The session entity of a user's session."""
    return df.EntityId(SESSION_ENTITY, session_key(user_id, session_id))


def batch_instance_id(user_id: str, session_id: str, through_seq: int) -> str:
    """One background batch per session and batch end: the store request that completes a batch starts it once."""
    return f"{user_prefix(user_id)}batch-{_digest(session_id)}-{through_seq}"


def reflection_instance_id(user_id: str, session_id: str) -> str:
    """One reflection per session."""
    return f"{user_prefix(user_id)}reflect-{_digest(session_id)}"


def eviction_instance_id(user_id: str, session_id: str, cutoff: str) -> str:
    """One eviction per session and cutoff."""
    return f"{user_prefix(user_id)}evict-{_digest(session_id, cutoff)}"
