"""One typed ``Settings`` object read from the environment (app settings on Azure, ``local.settings.json`` locally).

Field names are the app-setting names. Nothing is read at import time: ``get_settings()`` builds the object on first
use and caches it; tests call ``get_settings.cache_clear()`` after changing the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from memory_core.errors import ConfigurationError

StoreKind = Literal["sqlite", "cosmos"]
LlmProvider = Literal["azure_openai", "openai", "local"]
EmbeddingsProvider = Literal["azure_openai", "openai", "local", "none"]
CallerIdentity = Literal["request", "principal"]
LocalQuantization = Literal["dynamic", "weights"]


class Settings(BaseSettings):
    """Every setting of the service, with the guide's names and defaults."""

    # An empty value (as local.settings.json templates have) means "use the default".
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=True, frozen=True, env_ignore_empty=True)

    # Session pool (the guide's names and defaults)
    K_TURN_BUFFER: int = Field(5, ge=1, le=100, description="Recent turns kept verbatim in the hot session")
    L_TURN_CHUNKS: int = Field(10, ge=1, le=200, description="Turns per chunk compacted into the cumulative summary")
    M_SESSIONS_RECENT: int = Field(5, ge=0, le=100, description="Recent session summaries in the context")
    REFLECTION_THRESHOLD_TURNS: int = Field(15, ge=0, description="Minimum turns for insight extraction")
    MAX_SESSIONS: int = Field(1000, ge=1, description="Hot sessions kept before LRU eviction")
    SESSION_TTL_MINUTES: float = Field(30, gt=0, description="Idle minutes before a session is evicted")
    EVICTION_INTERVAL_SECONDS: int = Field(60, ge=1, description="How often stale sessions are looked for")
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    CLEANUP_SCHEDULE: str = Field(
        "0 * * * * *", description="NCRONTAB schedule of the cleanup timer; it skips runs closer than the interval"
    )
    HISTORY_RETENTION_DAYS: float = Field(7, gt=0, description="Finished orchestration histories kept this long")
    DURABLE_HUB_NAME: str = Field("AgentMemory", description="Durable Functions task hub (host.json reads it)")

    # Store
    STORE: StoreKind = "sqlite"
    SQLITE_PATH: Path = Field(Path(".memory/memory.sqlite3"), description="SQLite database file (STORE=sqlite)")
    SQLITE_SYNCHRONOUS: Literal["NORMAL", "FULL"] = Field(
        "FULL", description="FULL survives power loss; NORMAL only process crashes, and writes faster"
    )
    COSMOS_ENDPOINT: str | None = None
    COSMOS_KEY: str | None = Field(None, description="Account key; leave unset to use Entra ID")
    COSMOS_DATABASE_NAME: str = "agent_memory"
    COSMOS_INTERACTIONS_CONTAINER: str = "interactions"
    COSMOS_SUMMARIES_CONTAINER: str = "session_summaries"
    COSMOS_INSIGHTS_CONTAINER: str = "insights"
    COSMOS_VECTOR_SEARCH: bool = Field(True, description="Use VectorDistance (account has EnableNoSQLVectorSearch)")
    COSMOS_FULL_TEXT_SEARCH: bool = Field(True, description="Use FullTextScore (account has EnableNoSQLFullTextSearch)")
    COSMOS_ENDPOINT_DISCOVERY: bool = Field(True, description="Off only for single-endpoint emulators over http")

    # Models
    LLM_PROVIDER: LlmProvider = "local"
    EMBEDDINGS_PROVIDER: EmbeddingsProvider = "none"
    AZURE_OPENAI_ENDPOINT: str | None = None
    AZURE_OPENAI_API_KEY: str | None = Field(None, description="Leave unset to use Entra ID")
    AZURE_OPENAI_DEPLOYMENT: str = "gpt-4o"
    AZURE_OPENAI_API_VERSION: str = "2024-02-15-preview"
    AZURE_OPENAI_EMBEDDING_DEPLOYMENT: str = "text-embedding-3-small"
    AZURE_CLIENT_ID: str | None = Field(None, description="Client id of a user-assigned managed identity")
    OPENAI_BASE_URL: str | None = None
    OPENAI_API_KEY: str | None = None
    OPENAI_MODEL: str = "gpt-4o-mini"
    OPENAI_EMBEDDING_MODEL: str = "text-embedding-3-small"
    EMBEDDING_DIMENSIONS: int | None = Field(None, ge=1, le=8192, description="Vector size; model default when unset")
    LOCAL_EMBEDDING_MODEL: str | None = Field(None, description="ONNX model file or folder; packaged MiniLM if unset")
    LOCAL_EMBEDDING_TOKENIZER: str | None = Field(None, description="tokenizer.json; next to the model if unset")
    LOCAL_EMBEDDING_QUANTIZATION: LocalQuantization = Field(
        "dynamic",
        description="How the packaged model runs: int8 products (dynamic, prepared once) or as packaged (weights)",
    )
    LOCAL_MODEL_CACHE: str | None = Field(
        None, description="Folder of prepared local models; $XDG_CACHE_HOME/agent-memory (~/.cache) if unset"
    )
    MODEL_MAX_RETRIES: int = Field(4, ge=0, le=10)
    MODEL_TIMEOUT_SECONDS: float = Field(60, gt=0)

    # Context and limits
    CONTEXT_TOKEN_BUDGET: int = Field(2000, ge=100, le=200_000)
    MAX_MESSAGE_CHARS: int = Field(32_000, ge=1, le=1_000_000, description="Longest user or agent message")
    MAX_QUERY_CHARS: int = Field(2_000, ge=1, le=100_000)
    MAX_TOP_K: int = Field(50, ge=1, le=1000)
    MAX_METADATA_BYTES: int = Field(4_096, ge=0, le=1_000_000)
    MAX_LIST_LIMIT: int = Field(100, ge=1, le=10_000, description="Largest limit for insights and summaries")

    # Who the user is
    CALLER_IDENTITY: CallerIdentity = Field(
        "request",
        description="request: the user_id a request names; principal: the principal App Service Authentication "
        "authenticated (X-MS-CLIENT-PRINCIPAL-ID) on every memory route, a user_id that differs is refused. Only "
        "behind App Service Authentication, which strips those headers from what clients send",
    )
    TELEMETRY_RECORD_IDS: bool = Field(
        False,
        description="Whether traces carry user and session ids (user.id, gen_ai.conversation.id). Off by default: "
        "spans then name operations and counts only; no text of a turn is ever recorded",
    )
    MCP_ALLOW_FORGET: bool = Field(
        False,
        description="Whether the MCP tool forget_user may delete a user's memory. Off by default: the MCP endpoint "
        "takes the mcp_extension system key, where DELETE /users needs the master key",
    )

    @model_validator(mode="after")
    def _check_required_together(self) -> Settings:
        if self.STORE == "cosmos" and not self.COSMOS_ENDPOINT:
            raise ValueError("COSMOS_ENDPOINT is required when STORE=cosmos")
        uses_azure = "azure_openai" in (self.LLM_PROVIDER, self.EMBEDDINGS_PROVIDER)
        if uses_azure and not self.AZURE_OPENAI_ENDPOINT:
            raise ValueError("AZURE_OPENAI_ENDPOINT is required when a provider is azure_openai")
        uses_openai = "openai" in (self.LLM_PROVIDER, self.EMBEDDINGS_PROVIDER)
        if uses_openai and not (self.OPENAI_BASE_URL or self.OPENAI_API_KEY):
            raise ValueError("OPENAI_BASE_URL or OPENAI_API_KEY is required when a provider is openai")
        return self


def load_settings() -> Settings:
    """Read the settings from the environment; a bad value raises one ``ConfigurationError`` naming the setting."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{name}: {message} (got {err['input']!r})" if name else message)
        raise ConfigurationError("Invalid settings: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built on first use."""
    return load_settings()
