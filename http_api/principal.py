"""Who the caller is behind App Service Authentication (Easy Auth), with ``CALLER_IDENTITY=principal``.

App Service Authentication validates the caller's token before the Functions host sees the request and passes the
principal on in request headers; external requests cannot set those headers, so they are there only when App Service
set them (Learn: "Work with user identities in Azure App Service authentication"):

* ``X-MS-CLIENT-PRINCIPAL-ID``: "an identifier for the caller, which the identity provider sets". With Microsoft Entra
  ID it is the principal's object id (``oid``): immutable, never reused, the same for every app of the tenant, and
  meant as a key in database tables (Learn: "Access token claims reference"; ``sub`` is pairwise, one value per
  application, and the names are mutable). This is the user id.
* ``X-MS-CLIENT-PRINCIPAL``: base64 JSON of the claims (``{"auth_typ", "claims": [{"typ", "val"}], ...}``). When it
  carries an object-id claim, that claim must be the same id, or the request is refused: the headers would not
  describe one principal. Without ``X-MS-CLIENT-PRINCIPAL-ID``, that claim is the user id.
* ``X-MS-CLIENT-PRINCIPAL-NAME`` (an email or UPN) is a display name that can change: never used as an id.

A memory route of a request without a principal is a 401 (``UnauthenticatedError``); a ``user_id`` the request names
that is not the principal's is a 403 naming ``user_id`` (``ForbiddenError``); a request that names none gets the
principal's. Ids are compared exactly, as everywhere in the service.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from memory_core.errors import ForbiddenError, UnauthenticatedError
from memory_core.fields import Id

PRINCIPAL_ID_HEADER = "x-ms-client-principal-id"
PRINCIPAL_HEADER = "x-ms-client-principal"
# The object id's claim type as App Service maps it, and as the token names it.
OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
USER_FIELD = "user_id"

_ID = TypeAdapter(Id)


def principal_id(headers: Mapping[str, str]) -> str:
    """The id of the principal App Service Authentication authenticated, from a request's headers.

    ``headers``: an HTTP request's (case-insensitive), or any mapping with lower-case names (an MCP tool call's).

    Raises:
        UnauthenticatedError: no principal came with the request, its headers disagree, or its id cannot be a user id.
    """
    header = (headers.get(PRINCIPAL_ID_HEADER) or "").strip()
    claimed = _object_id_claim(headers.get(PRINCIPAL_HEADER))
    if header and claimed and header != claimed:
        raise UnauthenticatedError(
            "The principal's headers disagree: X-MS-CLIENT-PRINCIPAL-ID is not the object id of X-MS-CLIENT-PRINCIPAL"
        )
    found = header or claimed
    if not found:
        raise UnauthenticatedError(
            "This route needs an authenticated caller (App Service Authentication; CALLER_IDENTITY=principal): the "
            "request came without one"
        )
    try:
        return _ID.validate_python(found)
    except ValidationError:
        raise UnauthenticatedError(
            "The principal's id cannot be a user id (1-256 characters, no control characters)"
        ) from None


def bind_user(data: Mapping[str, Any], principal: str) -> dict[str, Any]:
    """``data`` (a request body or query) with the principal's id as its ``user_id``.

    Raises:
        ForbiddenError: ``data`` names another user (field ``user_id``).
    """
    if USER_FIELD not in data:
        return {**data, USER_FIELD: principal}
    given = data[USER_FIELD]
    if isinstance(given, str) and given != principal:
        raise ForbiddenError(
            "The authenticated caller may use its own memory only: user_id must be the principal's id "
            "(X-MS-CLIENT-PRINCIPAL-ID), or be left out",
            field=USER_FIELD,
        )
    return dict(data)  # the principal's id, or a value that is no string: validation answers that one (400)


def _object_id_claim(raw: str | None) -> str | None:
    """The object-id claim of an ``X-MS-CLIENT-PRINCIPAL`` header, if it has one."""
    if not raw:
        return None
    try:
        padded = raw.strip() + "=" * (-len(raw.strip()) % 4)
        document = json.loads(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        raise UnauthenticatedError("X-MS-CLIENT-PRINCIPAL is not base64-encoded JSON") from None
    claims = document.get("claims") if isinstance(document, dict) else None
    if not isinstance(claims, list):
        raise UnauthenticatedError("X-MS-CLIENT-PRINCIPAL has no claims list")
    for claim in claims:
        if isinstance(claim, dict) and claim.get("typ") in OBJECT_ID_CLAIMS and isinstance(claim.get("val"), str):
            value = str(claim["val"]).strip()
            return value or None
    return None
