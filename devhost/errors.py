"""The JSON error body devhost answers with when no function does: unknown routes, wrong methods, missing keys.

The shape is the memory service's error body, kept generic so it serves any app: ``{"error": <kind>, "detail":
<text>, "field": null}``. On Azure the Functions host answers these cases itself, differently (see README.md).
"""

from __future__ import annotations

from aiohttp import web


def error_response(status: int, error: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error answer: ``error`` is the kind (``NotFound``, ``MethodNotAllowed``...), ``detail`` says why."""
    return web.json_response({"error": error, "detail": detail, "field": None}, status=status, headers=headers)
