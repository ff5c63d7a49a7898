"""A transparent reverse proxy: the host's public port forwards the Durable HTTP API to the durable worker.

Clients keep every URL the host hands out (`statusQueryGetUri` and the other management URLs name the public port),
while the API itself is served by the durable worker process on its internal loopback port (`devhost.worker`). A
request is forwarded as it came: method, raw path and query, headers (`Host` included, so the URLs the worker derives
from it name the public port) and body; the answer comes back as the worker gave it. Only hop-by-hop headers are
dropped. When the worker cannot be reached the answer is 502 (devhost's JSON error body).
"""

from __future__ import annotations

import logging

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from devhost.errors import error_response

logger = logging.getLogger(__name__)

# Headers that describe one connection, not the message (RFC 9110, section 7.6.1); the lengths are recomputed.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


def _forwarded(headers: CIMultiDictProxy[str]) -> CIMultiDict[str]:
    """The end-to-end headers of a message, in order, repeated ones kept."""
    kept: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        if key.lower() not in _NOT_FORWARDED:
            kept.add(key, value)
    return kept


class ReverseProxy:
    """Forwards requests to one upstream origin (`http://127.0.0.1:PORT`) over a pool of keep-alive connections.

    Args:
        upstream: the origin requests go to.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the connection pool (on the running loop)."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            # no overall limit: a start that waits for the instance to complete (`?timeout=`) may take long
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def forward(self, request: web.Request) -> web.StreamResponse:
        """Send `request` upstream and answer with what comes back (502 when the upstream cannot be reached)."""
        assert self._session is not None, "start() the proxy first"
        body = await request.read()
        url = URL(self.upstream + request.raw_path, encoded=True)
        try:
            async with self._session.request(
                request.method,
                url,
                headers=_forwarded(request.headers),
                data=body or None,
                allow_redirects=False,
            ) as upstream:
                payload = await upstream.read()
                return web.Response(
                    status=upstream.status,
                    reason=upstream.reason,
                    headers=_forwarded(upstream.headers),
                    body=payload,
                )
        except (aiohttp.ClientError, OSError) as error:
            logger.error("devhost: the durable worker did not answer %s %s: %s", request.method, request.path, error)
            return error_response(502, "BadGateway", "The durable worker is not available")
