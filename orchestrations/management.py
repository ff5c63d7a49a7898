"""The Durable management HTTP API as forgetting a user needs it: every instance of a prefix, page after page.

The Python SDK's ``get_status_by`` sends no page size and ignores the ``x-ms-continuation-token`` the answer carries,
so it sees the first page only: 100 instances on Azure (the extension's ``OrchestrationStatusQueryCondition.PageSize``;
see the shared reference ``azure-runtime-behaviour.md``, "Management API"). The extension's ``HttpApiHandler`` reads
the page size from ``top`` and the continuation token from the request's ``x-ms-continuation-token`` header, and
answers the next token in the same header ("null" once there is no next page). This client follows it.

It talks to the client binding's ``rpcBaseUrl`` (the host's loopback endpoint the SDK itself calls; it needs no key),
never to the public webhook with the system key. On the Azure Storage back end the instance query lists entities too:
their instance ids are ``@<entity name>@<key>``, their ``customStatus`` says whether the entity exists, and a
deleted entity keeps its row until it is purged (``DELETE instances/@name@key`` purges an entity whatever its status).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

logger = logging.getLogger(__name__)

PAGE_SIZE = 100  # the extension's default page size, asked for explicitly
MAX_PAGES = 10_000  # a bound on one listing, against a token that never ends
CONTINUATION_HEADER = "x-ms-continuation-token"
RUNNING_STATUSES = frozenset({"Pending", "Running", "ContinuedAsNew", "Suspended"})
_TIMEOUT = aiohttp.ClientTimeout(total=60)


class ManagementError(RuntimeError):
    """The Durable management API answered something unexpected."""


@dataclass(frozen=True)
class InstanceInfo:
    """One row of the instance query: an orchestration, or an entity (``@name@key``)."""

    instance_id: str
    runtime_status: str
    last_updated: datetime | None = None
    entity_exists: bool | None = None  # entities: what customStatus says (None: not said)

    @property
    def running(self) -> bool:
        """Whether the orchestration may still do something (entities are always "Running")."""
        return self.runtime_status in RUNNING_STATUSES

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> InstanceInfo:
        """From one status document of the list (``instanceId``, ``runtimeStatus``, ``lastUpdatedTime``...)."""
        updated = status.get("lastUpdatedTime")
        custom = status.get("customStatus")
        exists = custom.get("entityExists") if isinstance(custom, dict) else None
        return cls(
            instance_id=str(status["instanceId"]),
            runtime_status=str(status.get("runtimeStatus") or ""),
            last_updated=datetime.fromisoformat(updated) if isinstance(updated, str) and updated else None,
            entity_exists=exists if isinstance(exists, bool) else None,
        )


class InstanceManagement(Protocol):
    """What forgetting a user needs of the Durable management API."""

    async def list_instances(self, prefix: str) -> list[InstanceInfo]:
        """Every instance whose id starts with ``prefix`` (every page)."""

    async def terminate(self, instance_id: str, reason: str) -> None:
        """Ask a running instance to stop (one that has finished or is unknown is fine)."""

    async def purge(self, instance_id: str) -> int:
        """Purge a finished instance's history, or an entity's row; how many instances were deleted."""

    async def aclose(self) -> None:
        """Release connections."""


def entity_instance_id(name: str, key: str) -> str:
    """An entity's instance id: ``@name@key``, the name lower-cased."""
    return f"@{name.lower()}@{key}"


class HttpInstanceManagement:
    """``InstanceManagement`` over the Durable HTTP API at ``base_url`` (the client binding's ``rpcBaseUrl``)."""

    def __init__(self, base_url: str, *, page_size: int = PAGE_SIZE) -> None:
        self._base = base_url if base_url.endswith("/") else base_url + "/"
        self._page_size = page_size
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=_TIMEOUT)
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _url(self, instance_id: str = "", operation: str = "") -> str:
        url = f"{self._base}instances/{quote(instance_id, safe='')}"
        return f"{url}/{operation}" if operation else url

    async def list_instances(self, prefix: str) -> list[InstanceInfo]:
        """Every instance whose id starts with ``prefix``, following the continuation token to the last page."""
        found: list[InstanceInfo] = []
        token: str | None = None
        params = {"instanceIdPrefix": prefix, "showInput": "false", "top": str(self._page_size)}
        http = self._session()
        for _ in range(MAX_PAGES):
            headers = {CONTINUATION_HEADER: token} if token else {}
            async with http.get(self._url(), params=params, headers=headers) as response:
                if response.status != 200:
                    raise ManagementError(f"Listing instances answered {response.status}")
                page = await response.json(content_type=None)
                token = response.headers.get(CONTINUATION_HEADER)
            found += [InstanceInfo.from_status(status) for status in page or []]
            if not token or token == "null":
                return found
        raise ManagementError(f"Listing instances of a prefix did not end after {MAX_PAGES} pages")

    async def terminate(self, instance_id: str, reason: str) -> None:
        """POST ``instances/{id}/terminate``: 202, or 404/410 when there is nothing left to stop."""
        url = self._url(instance_id, "terminate")
        async with self._session().post(url, params={"reason": reason}) as response:
            if response.status not in (200, 202, 404, 410):
                raise ManagementError(f"Terminating an instance answered {response.status}")

    async def purge(self, instance_id: str) -> int:
        """DELETE ``instances/{id}``: how many instances it deleted (0 when unknown, or when it is still running)."""
        async with self._session().delete(self._url(instance_id)) as response:
            if response.status in (404, 412):
                return 0
            if response.status != 200:
                raise ManagementError(f"Purging an instance answered {response.status}")
            body = await response.json(content_type=None)
        return int((body or {}).get("instancesDeleted", 0))
