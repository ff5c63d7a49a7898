"""The memory inspector's routes: its page and static files, and the admin listing of users and sessions.

The page is static HTML and a small script (no build step, nothing loaded from elsewhere); the script reads the
existing JSON routes (``GET /users?user_id=`` for everything of a user, ``GET /sessions/reflection``,
``POST /memory/retrieve``) and ``GET /inspector/users``, which answers as every other route does
(``http_api.responses``). On Azure the page and the listing need an admin key, as ``/stats`` and ``/users`` do;
the script and stylesheet hold no data and are anonymous, so the page can load them without a key in their URLs.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

from http_api.openapi import route
from http_api.responses import error_response, respond
from memory_core import use_cases

bp = df.Blueprint()

STATIC = Path(__file__).resolve().parent / "static"
ASSETS = {"inspector.js": "text/javascript", "inspector.css": "text/css"}

# The page runs only its own script and stylesheet and talks only to this app; user text never becomes markup.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the page's URL may carry the key (?code=)
    "Cache-Control": "no-store",
}


@cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _file_response(name: str, mimetype: str) -> func.HttpResponse:
    return func.HttpResponse(_static(name), status_code=200, mimetype=mimetype, charset="utf-8", headers=HEADERS)


@bp.route(route="inspector", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def inspector_page(req: func.HttpRequest) -> func.HttpResponse:
    """The memory inspector's page."""
    return _file_response("index.html", "text/html")


@bp.route(route="inspector/assets/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def inspector_asset(req: func.HttpRequest) -> func.HttpResponse:
    """The inspector's script and stylesheet (no data in them)."""
    name = req.route_params.get("name", "")
    if name not in ASSETS:
        return error_response(404, "NotFoundError", "No such file of the inspector", "name")
    return _file_response(name, ASSETS[name])


@route(bp, "GET /inspector/users")
async def inspector_users(req: func.HttpRequest) -> func.HttpResponse:
    """The users of the most recently active sessions, each with those sessions."""
    return await respond(req, use_cases.list_users)
