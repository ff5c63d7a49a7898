"""Fixtures of the Functions-layer tests: the indexed app, settings on a temporary SQLite file, a local task hub."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from devhost.functions import FunctionIndex, index_app
from memory_core import runtime
from memory_core.config import Settings, get_settings
from memory_core.service import MemoryService
from tests.functions.api_client import Api
from tests.functions.taskhub import HUB_NAME, NEVER, RecordingManagement, TaskHub

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
    """The app's functions by function name. ``get_functions()`` is not idempotent: index once per test session.

    devhost indexes the app object once per process too (``devhost.functions.index_app``): it does so here.
    """
    from function_app import app

    app.functions_bindings = None
    indexed = {fn.get_function_name(): fn for fn in app.get_functions()}
    app.functions_bindings = None
    index_app(app)
    return indexed


@pytest.fixture(scope="session")
def app_index(functions: dict[str, Any]) -> FunctionIndex:
    """devhost's index of the app: its orchestrators, activities and entities by Durable name."""
    from function_app import app

    return index_app(app)


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
def durable_settings(settings_env: Callable[..., None]) -> None:
    """The task hub's name (host.json reads it) and a cleanup schedule that never fires: the tests fire the timer."""
    settings_env(DURABLE_HUB_NAME=HUB_NAME, CLEANUP_SCHEDULE=NEVER)


@pytest.fixture
def hub_dir(tmp_path: Path) -> Iterator[Path]:
    """Where a test's task hubs keep their state: in memory where there is a tmpfs (devhost commits with
    ``synchronous=FULL``, and hundreds of tests each create a task hub)."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(prefix="functions-taskhub-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def task_hubs(
    functions: dict[str, Any], durable_settings: None, service: MemoryService, hub_dir: Path
) -> AsyncIterator[Callable[[bool], Awaitable[TaskHub]]]:
    """Starts a task hub (its durable back end running or not) that stops with the test."""
    async with AsyncExitStack() as stack:

        async def start(running: bool) -> TaskHub:
            state_dir = hub_dir / ("running-hub" if running else "pending-hub")
            return await stack.enter_async_context(TaskHub.started(state_dir, running=running))

        yield start


@pytest.fixture
async def hub(task_hubs: Callable[[bool], Awaitable[TaskHub]]) -> TaskHub:
    """The task hub with its durable back end stopped: orchestrations stay pending until the test resumes it."""
    return await task_hubs(False)


@pytest.fixture
async def running_hub(task_hubs: Callable[[bool], Awaitable[TaskHub]]) -> TaskHub:
    """The task hub with its durable back end running: what the app starts runs to its end."""
    return await task_hubs(True)


@pytest.fixture(autouse=True)
def recorded_management(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forgetting lists, terminates and purges through the app's management API, the terminations recorded on the
    client; a forget purges at once what has finished."""
    from orchestrations import host

    real = host.instance_management
    monkeypatch.setattr(host, "instance_management", lambda client: RecordingManagement(real(client), client))
    monkeypatch.setattr(host, "QUIET_SECONDS", 0.0)
    monkeypatch.setattr(host, "FORGET_PASS_PAUSE_SECONDS", 0.01)


@pytest.fixture
def api(functions: dict[str, Any], hub: TaskHub) -> Api:
    """The HTTP functions, with orchestrations left pending."""
    return Api(functions, hub)


@pytest.fixture
def running_api(functions: dict[str, Any], running_hub: TaskHub) -> Api:
    """The HTTP functions; each call returns once the background work it started has run to its end."""
    return Api(functions, running_hub)
