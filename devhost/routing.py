"""ASP.NET-style route templates, as Azure Functions uses for HTTP triggers.

Supported: literals (matched case-insensitively), `{name}`, `{name?}`, `{name=default}`, `{*name}` (catch-all, last
segment), several parameters and literals in one segment (`{file}.{ext}`), and inline constraints
`{name:int}`, `:long`, `:alpha`, `:guid`, `:bool`, `:double`/`:float`/`:decimal`, `:datetime`, `:minlength(n)`,
`:maxlength(n)`, `:length(n)`/`:length(a,b)`, `:min(n)`, `:max(n)`, `:range(a,b)`, `:regex(expr)`. An unknown
constraint is logged once and ignored.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

logger = logging.getLogger(__name__)

_PARAM = re.compile(r"\{([^{}]+)\}")


class RouteTemplateError(ValueError):
    """A route template that cannot be parsed."""


class RequestPathError(ValueError):
    """A request path the Functions host refuses with 400 (an escaped NUL, or bytes that are not UTF-8)."""


# -- the request path as the Functions host sees it ------------------------------------------------------------------
#
# The Functions host runs on ASP.NET Core (Kestrel): the request path it routes is decoded once, every %XX escape
# except %2F (and %2f), which stays as it is, because a decoded "/" would change the path's segments. An escape that
# does not form a valid UTF-8 sequence is kept as written, an escaped NUL is a 400, and dot segments are removed after
# decoding. Routing does not decode any further: a route value is the segment as decoded, "%2F" included.
# Sources: Kestrel's UrlDecoder (dotnet/aspnetcore, src/Shared/UrlDecoder/UrlDecoder.cs: SkipUnescape of %2F) and
# PathNormalizer; HttpRequest.Path's documentation ("fully decoded by the server except for '%2F'"); the host's HTTP
# routing (Azure/azure-webjobs-sdk-extensions, WebJobsRouteBuilder: ASP.NET Core Route templates over that path).

_HEX = "0123456789abcdefABCDEF"


def _escape_at(raw: bytes, index: int) -> int | None:
    """The byte an escape %XX at ``index`` stands for; None if it is no escape, or is %2F (never decoded)."""
    if index + 2 >= len(raw):
        return None
    high, low = chr(raw[index + 1]), chr(raw[index + 2])
    if high not in _HEX or low not in _HEX:
        return None
    value = int(high + low, 16)
    return None if value == 0x2F else value


def _utf8_sequence(raw: bytes, index: int, first: int) -> tuple[bytes, int] | None:
    """A whole UTF-8 sequence of escapes starting with ``first`` at ``index``, and where it ends; None if invalid."""
    if first & 0xE0 == 0xC0:
        count, bits, minimum = 2, first & 0x1F, 0x80
    elif first & 0xF0 == 0xE0:
        count, bits, minimum = 3, first & 0x0F, 0x800
    elif first & 0xF8 == 0xF0:
        count, bits, minimum = 4, first & 0x07, 0x10000
    else:
        return None
    decoded, position = bytearray([first]), index + 3
    for _ in range(count - 1):
        if position >= len(raw) or raw[position] != ord("%"):
            return None
        following = _escape_at(raw, position)
        if following is None or following & 0xC0 != 0x80:
            return None
        bits = (bits << 6) | (following & 0x3F)
        decoded.append(following)
        position += 3
    if bits < minimum or 0xD800 <= bits <= 0xDFFF or bits > 0x10FFFF:
        return None
    return bytes(decoded), position


def decode_path(raw_path: str) -> str:
    """The path of a raw request target (``/a%20b/c?x=1``) decoded as the Functions host decodes it (see above).

    Raises:
        RequestPathError: an escaped NUL, or a path whose bytes are not UTF-8.
    """
    raw = raw_path.split("?", 1)[0].encode("utf-8", "surrogateescape")
    out, index = bytearray(), 0
    while index < len(raw):
        byte = raw[index]
        if byte == ord("%"):
            value = _escape_at(raw, index)
            if value == 0:
                raise RequestPathError("The path contains an escaped NUL (%00)")
            if value is not None and value < 0x80:
                out.append(value)
                index += 3
                continue
            if value is not None:
                sequence = _utf8_sequence(raw, index, value)
                if sequence is not None:
                    out += sequence[0]
                    index = sequence[1]
                    continue
        out.append(byte)
        index += 1
    try:
        path = out.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestPathError("The path is not UTF-8") from None
    return remove_dot_segments(path)


def remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4: ``/a/./b/../c`` is ``/a/c``."""
    if "." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if segment == ".":
            if last:
                output.append("")
        elif segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/".join(output) or "/"


def _is_int(value: str, bits: int) -> bool:
    if not re.fullmatch(r"[+-]?\d+", value):
        return False
    number = int(value)
    return bool(-(2 ** (bits - 1)) <= number < 2 ** (bits - 1))


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _constraint(spec: str) -> Callable[[str], bool] | None:
    match = re.fullmatch(r"(\w+)(?:\((.*)\))?", spec, re.DOTALL)
    if not match:
        return None
    kind, raw_args = match.group(1).lower(), match.group(2)
    args = [a.strip() for a in raw_args.split(",")] if raw_args is not None and kind != "regex" else []
    simple: dict[str, Callable[[str], bool]] = {
        "int": lambda v: _is_int(v, 32),
        "long": lambda v: _is_int(v, 64),
        "alpha": lambda v: bool(re.fullmatch(r"[A-Za-z]+", v)),
        "guid": _is_guid,
        "bool": lambda v: v.lower() in ("true", "false"),
        "double": _is_float,
        "float": _is_float,
        "decimal": _is_float,
        "datetime": _is_datetime,
    }
    if kind in simple:
        return simple[kind]
    try:
        if kind == "minlength":
            low = int(args[0])
            return lambda v: len(v) >= low
        if kind == "maxlength":
            high = int(args[0])
            return lambda v: len(v) <= high
        if kind == "length":
            bounds = [int(a) for a in args]
            low, high = (bounds[0], bounds[0]) if len(bounds) == 1 else (bounds[0], bounds[1])
            return lambda v: low <= len(v) <= high
        if kind in ("min", "max", "range"):
            bounds = [int(a) for a in args]

            def check(v: str) -> bool:
                if not _is_int(v, 64):
                    return False
                number = int(v)
                if kind == "min":
                    return number >= bounds[0]
                if kind == "max":
                    return number <= bounds[0]
                return bounds[0] <= number <= bounds[1]

            return check
        if kind == "regex" and raw_args is not None:
            pattern = re.compile(raw_args, re.IGNORECASE)
            return lambda v: bool(pattern.search(v))
    except (IndexError, ValueError, re.error):
        return None
    return None


@dataclass
class _Parameter:
    name: str
    optional: bool
    catch_all: bool
    default: str | None
    checks: list[Callable[[str], bool]]


@dataclass
class Route:
    """A compiled route template and what it routes to."""

    template: str
    target: Any
    regex: re.Pattern[str]
    parameters: dict[str, _Parameter]
    rank: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for `path` (no leading or trailing slash), or None when it does not match."""
        found = self.regex.fullmatch(path)
        if not found:
            return None
        values: dict[str, str] = {}
        for name, parameter in self.parameters.items():
            value = found.group(name)
            if value is None or value == "":
                if parameter.default is not None:
                    values[name] = parameter.default
                elif parameter.optional or parameter.catch_all:
                    continue
                else:
                    return None
            else:
                if not all(check(value) for check in parameter.checks):
                    return None
                values[name] = value
        return values


def _parse_parameter(body: str, template: str) -> _Parameter:
    catch_all = body.startswith("*")
    if catch_all:
        body = body.lstrip("*")
    default = None
    if "=" in body:
        body, default = body.split("=", 1)
    parts = body.split(":")
    name = parts[0]
    optional = name.endswith("?")
    name = name.rstrip("?")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RouteTemplateError(f"Invalid route parameter {name!r} in {template!r}")
    checks = []
    for spec in parts[1:]:
        if spec.endswith("?"):
            optional = True
            spec = spec[:-1]
        check = _constraint(spec)
        if check is None:
            logger.warning("Route %r: constraint %r is not supported by devhost and is ignored", template, spec)
        else:
            checks.append(check)
    return _Parameter(name, optional, catch_all, default, checks)


def compile_route(template: str, target: Any) -> Route:
    """Compile a template (relative to the host root, without leading slash) into a `Route`."""
    template = template.strip("/")
    parameters: dict[str, _Parameter] = {}
    pattern = ""
    rank: list[int] = []
    segments = template.split("/") if template else []
    for position, segment in enumerate(segments):
        whole = _PARAM.fullmatch(segment)
        if whole:
            parameter = _parse_parameter(whole.group(1), template)
            parameters[parameter.name] = parameter
            group = f"(?P<{parameter.name}>.*)" if parameter.catch_all else f"(?P<{parameter.name}>[^/]+)"
            if parameter.catch_all:
                if position != len(segments) - 1:
                    raise RouteTemplateError(f"A catch-all parameter must be the last segment: {template!r}")
                pattern += f"(?:/{group})?"
                rank.append(5)
            elif parameter.optional or parameter.default is not None:
                pattern += f"(?:/{group})?"
                rank.append(4)
            else:
                pattern += f"/{group}"
                rank.append(2 if parameter.checks else 3)
            continue
        piece = ""
        last = 0
        has_parameter = False
        for found in _PARAM.finditer(segment):
            piece += re.escape(segment[last : found.start()])
            parameter = _parse_parameter(found.group(1), template)
            parameters[parameter.name] = parameter
            piece += f"(?P<{parameter.name}>[^/]+?)"
            last = found.end()
            has_parameter = True
        piece += re.escape(segment[last:])
        pattern += "/" + piece
        rank.append(1 if has_parameter else 0)
    regex = re.compile(pattern + "/?", re.IGNORECASE)
    return Route(template=template, target=target, regex=regex, parameters=parameters, rank=tuple(rank))


class Router:
    """Routes ordered by precedence: literal segments before constrained, plain, optional and catch-all ones."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = sorted(routes, key=lambda r: (r.rank, -len(r.rank)))

    def match(self, path: str) -> list[tuple[Route, dict[str, str]]]:
        """Every route that matches `path` (with a leading slash or not), most specific first."""
        normalized = "/" + path.strip("/") if path.strip("/") else ""
        found = []
        for route in self.routes:
            values = route.match(normalized)
            if values is not None:
                found.append((route, values))
        return found
