"""One contract suite, every Store adapter: the same behaviour on SQLite and on the Cosmos DB API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from memory_core.adapters.sqlite import SqliteStore
from memory_core.config import Settings
from memory_core.ports import Store
from tests.support.cosmos_emulator import COSMOS_EMULATOR_KEY

DIMS = 4
EMBEDDER = "contract-test-embedder"

StoreFactory = Callable[..., Awaitable[Store]]


@pytest.fixture(params=["sqlite", pytest.param("cosmos", marks=pytest.mark.cosmos)])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Opens stores over one backing database; a second call opens another client on the same data."""
    opened: list[Store] = []
    database = f"contract_{uuid.uuid4().hex[:12]}"

    async def make(embedding_model: str | None = EMBEDDER, dimensions: int | None = DIMS) -> Store:
        store: Store
        if request.param == "sqlite":
            store = SqliteStore(tmp_path / "memory.sqlite3")
        else:
            from memory_core.adapters.cosmos import CosmosStore

            endpoint = request.getfixturevalue("cosmos_endpoint")
            store = CosmosStore.from_settings(
                Settings(
                    STORE="cosmos",
                    COSMOS_ENDPOINT=endpoint,
                    COSMOS_KEY=COSMOS_EMULATOR_KEY,
                    COSMOS_DATABASE_NAME=database,
                    COSMOS_VECTOR_SEARCH=True,
                    COSMOS_FULL_TEXT_SEARCH=False,  # the server has no FullTextScore: the adapter's BM25 path runs
                    COSMOS_ENDPOINT_DISCOVERY=False,
                )
            )
        opened.append(store)
        await store.open(embedding_model, dimensions)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: StoreFactory) -> Store:
    return await make_store()
