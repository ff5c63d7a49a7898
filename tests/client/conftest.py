"""Fixtures of the client tests: one memory service per module (``tests/support/service.py``), unique users."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest

from tests.support.service import MemoryServiceProcess, free_port

_counter = itertools.count(1)

# Fast retries: the tests wait for nothing longer than they must.
FAST = {"backoff": 0.01, "max_backoff": 0.05}


def unique(prefix: str = "user") -> str:
    """An id no other test uses."""
    return f"{prefix}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[MemoryServiceProcess]:
    """The memory service of this test module, as a process; a module sets ``SERVICE_SETTINGS`` to change settings."""
    settings = getattr(request.module, "SERVICE_SETTINGS", {})
    with MemoryServiceProcess(tmp_path_factory.mktemp("client-service"), settings) as running:
        yield running


@pytest.fixture
def user() -> str:
    """A fresh user id, as users write them: a path or a URL would need each of ``+ / # ? %`` and the space escaped."""
    return unique("ü+tag@example.com/#?% user")


@pytest.fixture
def closed_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"
