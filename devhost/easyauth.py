"""`--easy-auth`: a local stand-in for App Service Authentication ("Easy Auth") in front of the HTTP triggers.

On Azure, App Service Authentication sees every request before the Functions host does: it validates the caller's
token, removes any `X-MS-CLIENT-PRINCIPAL*` header the client sent, and, for an authenticated caller, injects its own
(Learn: "Work with user identities in Azure App Service authentication"):

* `X-MS-CLIENT-PRINCIPAL-ID`: the principal's id (with Microsoft Entra ID, its object id);
* `X-MS-CLIENT-PRINCIPAL-NAME`: a display name; `X-MS-CLIENT-PRINCIPAL-IDP`: the provider (`aad`);
* `X-MS-CLIENT-PRINCIPAL`: base64 JSON of the claims, `{"auth_typ", "claims": [{"typ", "val"}], "name_typ",
  "role_typ"}`.

devhost cannot validate Entra ID tokens. With `--easy-auth` (or `DEVHOST_EASY_AUTH=1`) it does the rest: it always
drops the `X-MS-CLIENT-PRINCIPAL*` headers (and the provider-token headers `X-MS-TOKEN-*`) a client sends, and it
signs a request in as a test principal when the request names one in a form only devhost understands:

    Authorization: Bearer devhost-principal:<id>

That is a local stand-in, never a credential: the app never reads `Authorization` (it sees only the injected
headers), and on Azure such a token is no valid JWT, so App Service Authentication refuses it. A request without a
bearer token reaches the app unauthenticated, as App Service Authentication configured to allow anonymous requests
lets it through: the app then decides (a memory route with `CALLER_IDENTITY=principal` answers 401). Any other bearer
token is a 401 here, as a token that fails validation is on Azure. The deployed templates (`infra/bicep`) refuse
unauthenticated requests at the platform instead (`Return401`); the README says so.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping

EASY_AUTH_ENV = "DEVHOST_EASY_AUTH"
TOKEN_PREFIX = "devhost-principal:"
# Headers App Service Authentication owns: never taken from a client.
OWNED_PREFIXES = ("x-ms-client-principal", "x-ms-token-")
OBJECT_ID_CLAIM = "http://schemas.microsoft.com/identity/claims/objectidentifier"
NAME_CLAIM = "name"
MAX_ID_CHARS = 256
_BEARER = re.compile(r"bearer[ \t]+(\S.*)", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_TRUE = {"1", "true", "yes", "on"}


class UnknownTokenError(Exception):
    """A bearer token the stand-in cannot accept (on Azure: a token that fails validation, a 401)."""


def easy_auth_enabled(option: bool | None) -> bool:
    """The command line's choice, else `DEVHOST_EASY_AUTH` (1, true, yes or on; local.settings.json included)."""
    if option is not None:
        return option
    return os.environ.get(EASY_AUTH_ENV, "").strip().lower() in _TRUE


def principal_of(headers: Mapping[str, str]) -> str | None:
    """The test principal a request signs in as (`Authorization: Bearer devhost-principal:<id>`), else None.

    Raises:
        UnknownTokenError: a bearer token that is not the stand-in's, or names no usable id.
    """
    authorization = next((value for name, value in headers.items() if name.lower() == "authorization"), "")
    match = _BEARER.fullmatch(authorization.strip())
    if match is None:
        return None  # no bearer token: anonymous (other schemes are not App Service Authentication's)
    token = match.group(1).strip()
    if not token.startswith(TOKEN_PREFIX):
        raise UnknownTokenError(
            f"The local Easy Auth stand-in (--easy-auth) accepts only 'Bearer {TOKEN_PREFIX}<id>' tokens; it cannot "
            "validate Microsoft Entra ID tokens"
        )
    principal = token[len(TOKEN_PREFIX) :].strip()
    if not principal or len(principal) > MAX_ID_CHARS or _CONTROL.search(principal):
        raise UnknownTokenError(f"'{TOKEN_PREFIX}<id>' needs an id of 1-{MAX_ID_CHARS} characters, no control ones")
    return principal


def app_headers(headers: Mapping[str, str], principal: str | None) -> dict[str, str]:
    """The headers the app gets: the client's without those App Service Authentication owns, plus the principal's."""
    kept = {name: value for name, value in headers.items() if not name.lower().startswith(OWNED_PREFIXES)}
    if principal is None:
        return kept
    claims = {
        "auth_typ": "aad",
        "claims": [{"typ": OBJECT_ID_CLAIM, "val": principal}, {"typ": NAME_CLAIM, "val": principal}],
        "name_typ": NAME_CLAIM,
        "role_typ": "roles",
    }
    return {
        **kept,
        "x-ms-client-principal-id": principal,
        "x-ms-client-principal-name": principal,
        "x-ms-client-principal-idp": "aad",
        "x-ms-client-principal": base64.b64encode(json.dumps(claims).encode("utf-8")).decode("ascii"),
    }


def describe() -> str:
    """The start-up listing's line."""
    return (
        "Easy Auth stand-in (--easy-auth): X-MS-CLIENT-PRINCIPAL* headers from clients are dropped; "
        f"'Authorization: Bearer {TOKEN_PREFIX}<id>' signs a request in as principal <id>; without a token a request "
        "reaches the app anonymous."
    )
