"""The process-wide ``MemoryService``, built on first use and shared by every function of a worker.

Clients of the SDKs (aiohttp sessions, the SQLite worker thread) belong to the event loop that made them, so there
is one service per running loop. Nothing is built at import time: a bad setting surfaces on the first request as a
``ConfigurationError`` instead of un-indexing every function.
"""

from __future__ import annotations

import asyncio
import logging

from memory_core.config import get_settings
from memory_core.service import MemoryService

logger = logging.getLogger(__name__)

_services: dict[asyncio.AbstractEventLoop, MemoryService] = {}
_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}


async def get_service() -> MemoryService:
    """The shared service of the running event loop."""
    loop = asyncio.get_running_loop()
    service = _services.get(loop)
    if service is not None:
        return service
    lock = _locks.setdefault(loop, asyncio.Lock())
    async with lock:
        service = _services.get(loop)
        if service is None:
            settings = get_settings()
            service = await MemoryService.create(settings)
            _services[loop] = service
            logger.info(
                "✓ Memory service ready: store=%s, llm=%s, embeddings=%s",
                settings.STORE,
                service.chat.name,
                service.embedder.model if service.embedder else "none",
            )
    return service


async def close_service() -> None:
    """Close the running loop's service (tests and host shutdown)."""
    service = _services.pop(asyncio.get_running_loop(), None)
    if service is not None:
        await service.close()
