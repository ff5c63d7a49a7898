"""The request fields' types and their rules: ids, text, timestamps, integers and free-form JSON.

Each rule is enforced by a validator here and stated in the JSON Schema of the type, so ``/openapi.json`` says
exactly what a request may hold. Patterns use explicit character classes (no whitespace class, no lookaround), so
every regular-expression dialect that reads the document (ECMA-262, Python's ``re``, Rust's ``regex``) agrees with
the validators; a closing ``$`` is the end of the string, as ECMA-262 reads it (Python's ``$`` also matches before a
final newline: read it as the end of text, as Schemathesis does, or use ``fullmatch``, as the validators here do).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints, WithJsonSchema
from typing_extensions import TypeAliasType

# -- text -------------------------------------------------------------------------------------------------------

# Whitespace: Python's str.isspace() characters plus U+FEFF (whitespace in ECMA-262). Blank means only these.
BLANK_CHARS = r"\t-\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
# What an id may not hold: control characters (C0, DEL, C1) and the line and paragraph separators.
CONTROL_CHARS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
# What an id in a URL path may not hold besides (see PATH_ID_PATTERN).
PATH_UNSAFE_CHARS = r"/\\#?%"

NOT_BLANK_PATTERN = f"[^{BLANK_CHARS}]"
"""Unanchored, as JSON Schema applies ``pattern``: the text holds a character that is not whitespace."""

_NOT_BLANK = re.compile(NOT_BLANK_PATTERN)
_CONTROL = re.compile(f"[{CONTROL_CHARS}]")
_PATH_UNSAFE = re.compile(f"[{PATH_UNSAFE_CHARS}]")


def is_blank(text: str) -> bool:
    """Whether ``text`` is empty or whitespace only."""
    return _NOT_BLANK.search(text) is None


def _anchored(excluded: str) -> str:
    """Text of characters outside ``excluded``, at least one of them not whitespace."""
    return f"^[^{excluded}]*[^{excluded}{BLANK_CHARS}][^{excluded}]*$"


# -- ids --------------------------------------------------------------------------------------------------------

ID_MAX_CHARS = 256
ID_PATTERN = _anchored(CONTROL_CHARS)
PATH_ID_PATTERN = _anchored(CONTROL_CHARS + PATH_UNSAFE_CHARS)
ID_RULE = (
    f"1-{ID_MAX_CHARS} characters, not all whitespace, without control characters (U+0000-U+001F, U+007F-U+009F) or "
    "line and paragraph separators (U+2028, U+2029); any other character, e.g. `user+tag@example.com`, `john doe`, "
    "`a/b#c?d%e` or `müller`"
)


def _valid_id(value: str) -> str:
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters or line separators")
    if is_blank(value):
        raise ValueError("must not be blank")
    return value


def _valid_path_id(value: str) -> str:
    if _PATH_UNSAFE.search(value):
        raise ValueError(
            "in the path, must not contain / \\ # ? or %: pass such an id in the query string (?user_id=...)"
        )
    return value


Id = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ID_MAX_CHARS),
    AfterValidator(_valid_id),
    Field(description=ID_RULE, examples=["user123"], json_schema_extra={"pattern": ID_PATTERN}),
]
"""A user, session or turn id as the caller writes it."""

PathId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ID_MAX_CHARS),
    AfterValidator(_valid_id),
    AfterValidator(_valid_path_id),
    Field(
        description=f"{ID_RULE}; in the path also none of / \\ # ? % (the query-string form takes any id)",
        examples=["user123"],
        json_schema_extra={"pattern": PATH_ID_PATTERN},
    ),
]
"""A user id in a URL path segment: an ``Id`` that no server or proxy can read differently (see the README)."""


# -- integers ---------------------------------------------------------------------------------------------------


def _json_integer(value: Any) -> Any:
    """A JSON integer: a number without a fractional part (``5`` or ``5.0``), never a boolean or a string."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be an integer")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError("must be an integer")
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]
"""An integer as JSON Schema's ``integer`` means it: ``5`` and ``5.0`` are the same number; ``true`` and ``"5"`` are
not numbers."""


def bounded_json_int(minimum: int, maximum: int) -> Any:
    """``JsonInt`` within ``[minimum, maximum]``, usable inside a union (``bounded_json_int(1, 9) | None``).

    The bounds come before the validator in the annotation: so placed, the JSON Schema of the union's integer
    branch says ``minimum``/``maximum`` (after it, pydantic writes its own ``ge``/``le``, which no schema reader
    knows).
    """
    return Annotated[int, Field(ge=minimum, le=maximum), BeforeValidator(_json_integer)]


# -- timestamps -------------------------------------------------------------------------------------------------

# Turn times every store represents the same way: four-digit years in UTC. Years 1001-9998 with any offset; in the
# years 1000 and 9999 only UTC times, so that no offset moves a time out of the range.
_DATE = r"-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
_TIME = r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,9})?"
_ANY_OFFSET = r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
_UTC = r"(?:Z|[+-]00:00)"
_INNER_YEARS = r"(?:100[1-9]|10[1-9]\d|1[1-9]\d\d|[2-8]\d{3}|9[0-8]\d\d|99[0-8]\d|999[0-8])"
TIMESTAMP_PATTERN = f"^(?:{_INNER_YEARS}{_DATE}{_TIME}{_ANY_OFFSET}|(?:1000|9999){_DATE}{_TIME}{_UTC})$"
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
MIN_YEAR, MAX_YEAR = 1000, 9999
TIMESTAMP_RULE = (
    "an RFC 3339 date-time with an offset (2026-05-01T09:00:00+02:00, 2026-05-01T07:00:00.5Z; at most 9 fraction "
    "digits, kept to the microsecond) between years 1000 and 9999: years 1001-9998 with any offset, the years 1000 "
    "and 9999 in UTC (Z or +00:00)"
)


def _parse_timestamp(value: Any) -> Any:
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise ValueError(f"must be {TIMESTAMP_RULE}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"must be a real date: {value!r} is not") from None
    if not MIN_YEAR <= parsed.astimezone(UTC).year <= MAX_YEAR:  # the pattern already ensures it
        raise ValueError(f"must be {TIMESTAMP_RULE}")
    return parsed


Timestamp = Annotated[
    datetime,
    BeforeValidator(_parse_timestamp),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}),
]
"""A turn's time as sent: an aware ``datetime`` every store can represent."""


# -- free-form JSON ---------------------------------------------------------------------------------------------

MAX_SAFE_INTEGER = 2**53 - 1  # I-JSON (RFC 7493): the integers every JSON reader (an IEEE 754 double) keeps exactly
MAX_JSON_DEPTH = 32  # pydantic cannot serialize much deeper values (about 250 levels)
JSON_RULE = (
    "numbers finite, and those without a fractional part within ±(2^53-1), as I-JSON (RFC 7493) requires; objects "
    f"and arrays nested at most {MAX_JSON_DEPTH} levels deep (this object included)"
)

_SafeInteger = Annotated[int, Field(ge=-MAX_SAFE_INTEGER, le=MAX_SAFE_INTEGER)]
_Fraction = Annotated[float, WithJsonSchema({"type": "number", "not": {"type": "integer"}})]
JsonValue = TypeAliasType(
    "JsonValue",
    "bool | str | _SafeInteger | _Fraction | list[JsonValue] | dict[str, JsonValue] | None",
)
"""The JSON Schema of a value ``check_json`` accepts (validation is ``check_json``'s, not pydantic's)."""


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def check_json(value: Any, name: str) -> None:
    """Refuse what JSON or a store would not keep as sent: NaN, infinities, integers beyond I-JSON, lone surrogates.

    ``value`` is what ``json.loads`` made of a request (Python reads ``NaN``, ``Infinity`` and ``1e999``); ``name``
    prefixes the location named in errors. Also bounds nesting to ``MAX_JSON_DEPTH`` levels.
    """
    stack: list[tuple[Any, int, str]] = [(value, 0, name)]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, dict | list):
            if depth + 1 > MAX_JSON_DEPTH:
                raise ValueError(f"must nest objects and arrays at most {MAX_JSON_DEPTH} levels deep")
            children = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in children:
                if not isinstance(key, int | str) or (isinstance(key, str) and _has_surrogate(key)):
                    raise ValueError(f"has a key at {where} that is not a Unicode string")
                stack.append((child, depth + 1, f"{where}.{key}"))
        elif node is None or isinstance(node, bool):
            continue
        elif isinstance(node, int):
            if abs(node) > MAX_SAFE_INTEGER:
                raise ValueError(f"has an integer beyond ±(2^53-1) at {where}: send it as a string")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise ValueError(f"has a number at {where} that is not finite (NaN and infinities are not JSON)")
            if node.is_integer() and abs(node) > MAX_SAFE_INTEGER:
                raise ValueError(f"has a number without a fraction beyond ±(2^53-1) at {where}: send it as a string")
        elif isinstance(node, str):
            if _has_surrogate(node):
                raise ValueError(f"has a string at {where} that is not Unicode (a lone surrogate)")
        else:
            raise ValueError(f"has a value at {where} that is not JSON")
