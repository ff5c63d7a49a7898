"""`local.settings.json` and `host.json`, read as `func start` reads them."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_ROUTE_PREFIX = "api"
# Core Tools' default hub name when host.json names none.
DEFAULT_HUB_NAME = "TestHubName"

_SETTING_REFERENCE = re.compile(r"^%([^%]+)%$")


class SettingError(ValueError):
    """A `%NAME%` reference names a setting that is not defined."""


@dataclass(frozen=True)
class HostJson:
    """The parts of host.json the local host uses."""

    route_prefix: str
    hub_name: str


def load_local_settings(script_root: Path) -> dict[str, str]:
    """The `Values` of `local.settings.json` (empty when there is no such file)."""
    path = script_root / "local.settings.json"
    if not path.is_file():
        return {}
    document = json.loads(path.read_text(encoding="utf-8-sig"))
    values = document.get("Values") or {}
    return {str(key): "" if value is None else str(value) for key, value in values.items()}


def apply_settings(values: dict[str, str]) -> list[str]:
    """Export settings as environment variables; variables already set win (as with `func start`)."""
    applied = []
    for key, value in values.items():
        if key not in os.environ:
            os.environ[key] = value
            applied.append(key)
    return applied


def resolve_setting(value: str) -> str:
    """Resolve a `%NAME%` reference from the environment; any other value is returned as is."""
    match = _SETTING_REFERENCE.match(value.strip())
    if not match:
        return value
    name = match.group(1)
    if name not in os.environ:
        raise SettingError(
            f"The setting {name!r} referenced as '%{name}%' is not defined: add it to the Values of "
            f"local.settings.json or to the environment"
        )
    return os.environ[name]


def load_host_json(script_root: Path) -> HostJson:
    """Route prefix (`extensions.http.routePrefix`, default "api") and hub name (`extensions.durableTask.hubName`)."""
    path = script_root / "host.json"
    document: dict[str, Any] = {}
    if path.is_file():
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    else:
        logger.warning("No host.json in %s: using the defaults", script_root)
    extensions = document.get("extensions") or {}
    http = extensions.get("http") or {}
    route_prefix = http.get("routePrefix", DEFAULT_ROUTE_PREFIX)
    route_prefix = DEFAULT_ROUTE_PREFIX if route_prefix is None else str(route_prefix).strip("/")
    durable = extensions.get("durableTask") or {}
    hub = durable.get("hubName") or DEFAULT_HUB_NAME
    return HostJson(route_prefix=route_prefix, hub_name=resolve_setting(str(hub)) or DEFAULT_HUB_NAME)
