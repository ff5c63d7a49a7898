"""Build the store and model engines the settings ask for. Imports of optional SDKs happen here, on demand."""

from __future__ import annotations

from memory_core.config import Settings
from memory_core.ports import ChatModel, Embedder, Store


def build_store(settings: Settings) -> Store:
    """The configured store, not yet opened."""
    if settings.STORE == "cosmos":
        from memory_core.adapters.cosmos import CosmosStore

        return CosmosStore.from_settings(settings)
    from memory_core.adapters.sqlite import SqliteStore

    return SqliteStore(settings.SQLITE_PATH, synchronous=settings.SQLITE_SYNCHRONOUS)


def build_chat_model(settings: Settings) -> ChatModel:
    """The configured chat model."""
    if settings.LLM_PROVIDER == "local":
        from memory_core.adapters.local_chat import LocalChatModel

        return LocalChatModel()
    from memory_core.adapters.openai_models import build_chat_model as build_openai_chat

    return build_openai_chat(settings)


def build_embedder(settings: Settings) -> Embedder | None:
    """The configured embedder, or None for full-text search only."""
    if settings.EMBEDDINGS_PROVIDER == "none":
        return None
    if settings.EMBEDDINGS_PROVIDER == "local":
        from memory_core.adapters.local_embedder import build_local_embedder

        return build_local_embedder(settings)
    from memory_core.adapters.openai_models import build_embedder as build_openai_embedder

    return build_openai_embedder(settings)
