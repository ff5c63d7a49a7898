"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.cosmos_emulator import start_cosmos_server


@pytest.fixture(scope="session")
def cosmos_endpoint() -> Iterator[str]:
    """The endpoint of one Cosmos DB API server (tests/support/cosmos_server.js) shared by the whole test session."""
    with start_cosmos_server() as server:
        yield server.endpoint
