"""Function keys, for `--enable-auth` (off by default, as with `func start`).

Keys come from the environment (`DEVHOST_MASTER_KEY`, `DEVHOST_FUNCTION_KEY`) or from `keys.json` in the state
directory, which is created with random keys on first use. Levels behave as on Azure: `anonymous` needs nothing,
`function` accepts a function key or the master key, `admin` needs the master key; the extensions' webhooks accept
their system key (the Durable HTTP API `durabletask_extension`, the MCP endpoints `mcp_extension`) or the master key.
A key is read from the `code` query parameter or the `x-functions-key` header.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from devhost.store import ensure_private

DURABLE_SYSTEM_KEY = "durabletask_extension"
MCP_SYSTEM_KEY = "mcp_extension"
SYSTEM_KEYS = (DURABLE_SYSTEM_KEY, MCP_SYSTEM_KEY)


@dataclass
class Keys:
    """The host's keys."""

    master: str
    function_keys: dict[str, str] = field(default_factory=dict)  # host-level function keys, by key name
    per_function: dict[str, dict[str, str]] = field(default_factory=dict)  # function name -> key name -> key
    system: dict[str, str] = field(default_factory=dict)

    @property
    def default_function_key(self) -> str:
        """The host's `default` function key."""
        return self.function_keys.get("default") or next(iter(self.function_keys.values()), self.master)

    @property
    def durable_key(self) -> str:
        """The key the Durable webhook URLs carry."""
        return self.system.get(DURABLE_SYSTEM_KEY, self.master)


def load_keys(state_dir: Path) -> Keys:
    """Keys from the environment, else from `<state_dir>/keys.json` (created with random keys if missing)."""
    path = state_dir / "keys.json"
    document: dict[str, object] = {}
    if path.is_file():
        document = json.loads(path.read_text(encoding="utf-8"))
    changed = False
    if not isinstance(document.get("masterKey"), str):
        document["masterKey"] = secrets.token_urlsafe(32)
        changed = True
    function_keys = document.get("functionKeys")
    if not isinstance(function_keys, dict) or not function_keys:
        document["functionKeys"] = {"default": secrets.token_urlsafe(32)}
        changed = True
    system_keys = document.get("systemKeys")
    if not isinstance(system_keys, dict) or any(name not in system_keys for name in SYSTEM_KEYS):
        kept = system_keys if isinstance(system_keys, dict) else {}
        document["systemKeys"] = {name: secrets.token_urlsafe(32) for name in SYSTEM_KEYS} | kept
        changed = True
    if changed:
        state_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2), encoding="utf-8")
        ensure_private(path)
    keys = Keys(
        master=str(document["masterKey"]),
        function_keys={str(k): str(v) for k, v in dict(document["functionKeys"]).items()},  # type: ignore[call-overload]
        per_function={
            str(name): {str(k): str(v) for k, v in dict(values).items()}
            for name, values in dict(document.get("functions") or {}).items()  # type: ignore[call-overload]
        },
        system={str(k): str(v) for k, v in dict(document["systemKeys"]).items()},  # type: ignore[call-overload]
    )
    if os.environ.get("DEVHOST_MASTER_KEY"):
        keys.master = os.environ["DEVHOST_MASTER_KEY"]
    if os.environ.get("DEVHOST_FUNCTION_KEY"):
        keys.function_keys = {"default": os.environ["DEVHOST_FUNCTION_KEY"]}
    return keys


def presented_key(request: web.Request) -> str | None:
    """The key a request carries (`code` query parameter or `x-functions-key` header)."""
    return request.query.get("code") or request.headers.get("x-functions-key")


def _matches(candidate: str | None, keys: list[str]) -> bool:
    if not candidate:
        return False
    return any(hmac.compare_digest(candidate.encode(), key.encode()) for key in keys if key)


def authorized(keys: Keys, level: str, request: web.Request, function_name: str | None = None) -> bool:
    """Whether the request may call a function of this auth level."""
    if level == "anonymous":
        return True
    candidate = presented_key(request)
    if level == "admin":
        return _matches(candidate, [keys.master])
    allowed = [keys.master, *keys.function_keys.values()]
    if function_name:
        allowed += list(keys.per_function.get(function_name, {}).values())
    return _matches(candidate, allowed)


def authorized_system(keys: Keys, request: web.Request, name: str = DURABLE_SYSTEM_KEY) -> bool:
    """Whether the request may call an extension's webhooks: its system key (``name``) or the master key."""
    return _matches(presented_key(request), [keys.master, keys.system.get(name, keys.master)])
