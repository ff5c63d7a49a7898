"""Fixtures of the Functions-layer tests: the indexed app, settings on a temporary SQLite file, a fake client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from memory_core import runtime
from memory_core.config import Settings, get_settings
from memory_core.service import MemoryService
from tests.functions.api_client import Api
from tests.functions.durable import AppFunctions, FakeDurableClient

# Small pool figures so a few turns exercise compaction and reflection.
TEST_SETTINGS = {
    "STORE": "sqlite",
    "LLM_PROVIDER": "local",
    "EMBEDDINGS_PROVIDER": "none",
    "K_TURN_BUFFER": "2",
    "L_TURN_CHUNKS": "2",
    "REFLECTION_THRESHOLD_TURNS": "3",
    "M_SESSIONS_RECENT": "3",
    "MAX_SESSIONS": "100",
    "SESSION_TTL_MINUTES": "30",
    "EVICTION_INTERVAL_SECONDS": "60",
    "HISTORY_RETENTION_DAYS": "7",
    "SQLITE_SYNCHRONOUS": "NORMAL",
}


@pytest.fixture(scope="session")
def functions() -> dict[str, Any]:
    """The app's functions by function name. ``get_functions()`` is not idempotent: index once per test session."""
    from function_app import app

    app.functions_bindings = None
    return {fn.get_function_name(): fn for fn in app.get_functions()}


@pytest.fixture(scope="session")
def app_functions(functions: dict[str, Any]) -> AppFunctions:
    return AppFunctions(functions)


@pytest.fixture(autouse=True)
def settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[..., None]]:
    """Point every setting at a temporary SQLite file; the returned function overrides settings."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**TEST_SETTINGS, "SQLITE_PATH": str(tmp_path / "memory.sqlite3")}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    def override(**values: Any) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        get_settings.cache_clear()

    yield override
    get_settings.cache_clear()


@pytest.fixture
async def service() -> AsyncIterator[MemoryService]:
    """The running loop's shared service (what every function gets from ``get_service()``), closed afterwards."""
    svc = await runtime.get_service()
    yield svc
    await runtime.close_service()


@pytest.fixture
def client(app_functions: AppFunctions, service: MemoryService) -> FakeDurableClient:
    """A fake client whose orchestrations stay pending until the test runs them."""
    return FakeDurableClient(app_functions)


@pytest.fixture(autouse=True)
def fake_management(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host lists, terminates and purges through the fake client's management API, and purges at once."""
    from orchestrations import host

    monkeypatch.setattr(host, "instance_management", lambda client: client.management)
    monkeypatch.setattr(host, "QUIET_SECONDS", 0.0)
    monkeypatch.setattr(host, "FORGET_PASS_PAUSE_SECONDS", 0.01)


@pytest.fixture
def running_client(app_functions: AppFunctions, service: MemoryService) -> FakeDurableClient:
    """A fake client that runs every orchestration it starts to its end."""
    return FakeDurableClient(app_functions, run=True)


@pytest.fixture
def api(functions: dict[str, Any], client: FakeDurableClient) -> Api:
    """The HTTP functions, with orchestrations left pending."""
    return Api(functions, client)


@pytest.fixture
def running_api(functions: dict[str, Any], running_client: FakeDurableClient) -> Api:
    """The HTTP functions, with every orchestration run to its end as it starts."""
    return Api(functions, running_client)
