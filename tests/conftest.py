"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.cosmos_emulator import start_cosmos_server

# The suite decides where spans go (tests/functions/test_telemetry.py installs its own in-memory exporter): an
# exporter configured in the developer's shell would make the app record spans and carry trace context in its
# Durable payloads, which the tests compare exactly.
for _name in [n for n in os.environ if n.startswith("OTEL_") or n == "APPLICATIONINSIGHTS_CONNECTION_STRING"]:
    del os.environ[_name]


@pytest.fixture(scope="session")
def cosmos_endpoint() -> Iterator[str]:
    """The endpoint of one Cosmos DB API server (tests/support/cosmos_server.js) shared by the whole test session."""
    with start_cosmos_server() as server:
        yield server.endpoint
