import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from http_api.openapi import openapi_document
from memory_core.config import Settings
from memory_core.models import (
    InsightsRequest,
    RetrieveRequest,
    StartSessionRequest,
    StoreTurnRequest,
    SummariesRequest,
    UserQuery,
    UserRef,
    limits_context,
)

TURN = {"user_id": "user123", "session_id": "abc123", "user_message": "What is a 401k?", "agent_message": "A plan."}


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


GOOD_IDS = [
    "a",
    "user123",
    "A.b_c:d@e-f",
    "user+tag@example.com",
    "john doe",
    " padded ",
    "a/b\\c#d?e%f",
    "50%25off",
    "müller",
    "用户",
    "emoji 😀",
    "x" * 256,
]
BAD_IDS = [
    "",
    "x" * 257,
    "   ",
    "\u3000",
    "\ufeff",
    "new\nline",
    "tab\there",
    "nul\x00",
    "del\x7f",
    "c1\x85",
    "line\u2028separator",
]


@pytest.mark.parametrize("good", GOOD_IDS)
def test_ids_take_any_printable_non_blank_string_up_to_256_characters(good: str):
    assert StartSessionRequest(user_id=good).user_id == good
    assert StoreTurnRequest.model_validate({**TURN, "session_id": good, "turn_id": good}).turn_id == good


@pytest.mark.parametrize("bad", BAD_IDS)
def test_blank_long_or_control_ids_are_refused_naming_the_field(bad: str):
    with pytest.raises(ValidationError) as caught:
        StartSessionRequest(user_id=bad)
    assert error_fields(caught.value) == {"user_id"}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=260) | st.sampled_from([*GOOD_IDS, *BAD_IDS, "0\n", "x\r\n"]))
def test_the_documented_id_pattern_and_length_are_the_validator(text: str):
    schema = StartSessionRequest.model_json_schema()["properties"]["user_id"]
    # JSON Schema reads patterns as ECMA-262 does: a closing $ is the end of the string (Python's $ also matches
    # before a final newline, so "0\n" would pass a plain re.search), as Schemathesis reads them too.
    pattern = re.compile(schema["pattern"].removesuffix("$") + r"\Z")
    documented = schema["minLength"] <= len(text) <= schema["maxLength"] and pattern.search(text)
    try:
        StartSessionRequest(user_id=text)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == bool(documented)


@pytest.mark.parametrize("bad", ["a/b", "a\\b", "a#b", "a?b", "a%2Fb", "50%"])
def test_path_ids_refuse_what_a_path_cannot_carry_unambiguously(bad: str):
    assert UserQuery(user_id=bad).user_id == bad
    with pytest.raises(ValidationError) as caught:
        UserRef(user_id=bad)
    assert error_fields(caught.value) == {"user_id"}
    assert "?user_id=" in str(caught.value)
    pattern = UserRef.model_json_schema()["properties"]["user_id"]["pattern"]
    assert re.search(pattern, bad) is None
    assert re.search(pattern, "user+tag@example.com john") is not None


# -- strict booleans and integers, finite numbers --------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, "true", "false", None, 0.0])
def test_booleans_are_true_or_false_only(value: object):
    with pytest.raises(ValidationError) as caught:
        StartSessionRequest.model_validate({"user_id": "u", "restore": value})
    assert error_fields(caught.value) == {"restore"}
    for field in ("recent_only", "include_superseded"):
        with pytest.raises(ValidationError) as caught:
            InsightsRequest.model_validate({"user_id": "u", field: value})
        assert error_fields(caught.value) == {field}


@pytest.mark.parametrize("value", [5.5, True, "5", None, float("nan"), float("inf")])
def test_integers_are_numbers_without_a_fraction(value: object):
    with pytest.raises(ValidationError) as caught:
        RetrieveRequest.model_validate({"user_id": "u", "query": "q", "top_k": value})
    assert error_fields(caught.value) == {"top_k"}
    with pytest.raises(ValidationError):
        SummariesRequest.model_validate({"user_id": "u", "limit": value})


def test_an_integer_written_with_a_zero_fraction_is_that_integer():
    # JSON Schema's "integer" is a number without a fractional part: 5.0 is 5.
    request = RetrieveRequest.model_validate({"user_id": "u", "query": "q", "top_k": 5.0})
    assert request.top_k == 5 and type(request.top_k) is int


@pytest.mark.parametrize(
    "metadata",
    [
        {"a": float("nan")},
        {"a": float("inf")},
        {"a": [1, {"b": [float("-inf")]}]},
        {"a": 2**53},
        {"a": -(2**53)},
        {"a": 1e300},
        {"a": "lone \ud800 surrogate"},
        {"lone \udc00": 1},
        {"a": b"bytes"},
    ],
)
def test_metadata_refuses_what_json_would_not_keep_as_sent(metadata: dict[str, object]):
    with pytest.raises(ValidationError) as caught:
        StoreTurnRequest.model_validate({**TURN, "metadata": metadata})
    assert error_fields(caught.value) == {"metadata"}


def test_metadata_keeps_finite_numbers_and_safe_integers():
    metadata = {
        "big": 2**53 - 1,
        "small": -(2**53 - 1),
        "ratio": 0.5,
        "tiny": 1.5e-300,
        "half": 4.5e15 + 0.5,
        "nested": [{"n": None}],
    }
    assert StoreTurnRequest.model_validate({**TURN, "metadata": metadata}).metadata == metadata


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-05-01T09:00:00+02:00",
        "2026-05-01T07:00:00Z",
        "2026-05-01T07:00:00.123456789-00:00",
        "1001-01-01T00:00:00+13:00",
        "1000-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999+00:00",
        "9998-12-31T23:00:00-12:00",
    ],
)
def test_timestamps_the_pattern_allows_are_accepted(timestamp: str):
    pattern = StoreTurnRequest.model_json_schema()["properties"]["timestamp"]["anyOf"][0]["pattern"]
    assert re.search(pattern, timestamp)
    parsed = StoreTurnRequest.model_validate({**TURN, "timestamp": timestamp}).timestamp
    assert parsed is not None and parsed.tzinfo is not None


@pytest.mark.parametrize(
    "timestamp",
    [
        "0999-12-31T23:59:59Z",
        "1000-01-01T00:30:00+01:00",
        "9999-12-31T20:00:00-05:00",
        "2026-05-01T09:00:00",
        "2026-05-01 09:00:00Z",
        "2026-05-01T09:00Z",
        "2026-05-01T24:00:00Z",
        "2026-02-30T09:00:00Z",
        "2026-05-01T09:00:00.1234567890Z",
        "yesterday",
        1714550400,
    ],
)
def test_timestamps_outside_the_pattern_or_the_calendar_are_refused(timestamp: object):
    with pytest.raises(ValidationError) as caught:
        StoreTurnRequest.model_validate({**TURN, "timestamp": timestamp})
    assert error_fields(caught.value) == {"timestamp"}


# -- the schema says what the validators do --------------------------------------------------------------------


def test_the_document_shows_the_configured_limits():
    settings = Settings(MAX_MESSAGE_CHARS=10, MAX_TOP_K=3, MAX_QUERY_CHARS=5, MAX_LIST_LIMIT=2, MAX_METADATA_BYTES=99)
    schemas = openapi_document(settings)["components"]["schemas"]
    turn, retrieve = schemas["StoreTurnRequest"]["properties"], schemas["RetrieveRequest"]["properties"]
    assert turn["user_message"]["maxLength"] == turn["agent_message"]["maxLength"] == 10
    assert turn["metadata"]["x-maxJsonBytes"] == 99
    assert retrieve["query"]["maxLength"] == 5 and retrieve["top_k"]["maximum"] == 3
    assert schemas["InsightsRequest"]["properties"]["limit"]["maximum"] == 2
    assert schemas["SummariesRequest"]["properties"]["limit"]["maximum"] == 2
    defaults = openapi_document()["components"]["schemas"]
    assert defaults["RetrieveRequest"]["properties"]["top_k"]["maximum"] == 50
    assert defaults["InsightsRequest"]["properties"]["limit"]["maximum"] == 100
    assert defaults["StoreTurnRequest"]["properties"]["user_message"]["maxLength"] == 32_000


@pytest.mark.parametrize("text", ["", " ", "\t\n", "\u3000\u00a0", "\ufeff", "\x1c"])
def test_blank_text_is_what_the_documented_pattern_calls_blank(text: str):
    schema = StoreTurnRequest.model_json_schema()["properties"]["user_message"]
    assert re.search(schema["pattern"], text) is None
    with pytest.raises(ValidationError):
        StoreTurnRequest.model_validate({**TURN, "user_message": text})


def test_guide_request_shapes_validate_with_defaults():
    start = StartSessionRequest.model_validate({"user_id": "user123"})
    assert start.session_id is None and start.restore is True
    turn = StoreTurnRequest.model_validate(TURN)
    assert turn.turn_id is None and turn.timestamp is None and turn.metadata == {}
    assert RetrieveRequest.model_validate({"user_id": "u", "query": "q"}).top_k == 5
    assert InsightsRequest.model_validate({"user_id": "u"}).recent_only is False
    assert SummariesRequest.model_validate({"user_id": "u"}).limit == 5


def test_unknown_fields_are_refused():
    with pytest.raises(ValidationError) as caught:
        StoreTurnRequest.model_validate({**TURN, "usr_message": "typo"})
    assert error_fields(caught.value) == {"usr_message"}


def test_message_and_query_limits_come_from_settings():
    context = limits_context(Settings(MAX_MESSAGE_CHARS=10, MAX_TOP_K=3, MAX_QUERY_CHARS=5, MAX_LIST_LIMIT=2))
    with pytest.raises(ValidationError) as caught:
        StoreTurnRequest.model_validate({**TURN, "user_message": "x" * 11}, context=context)
    assert error_fields(caught.value) == {"user_message"}
    assert "at most 10 characters" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        RetrieveRequest.model_validate({"user_id": "u", "query": "q", "top_k": 4}, context=context)
    assert error_fields(caught.value) == {"top_k"}
    with pytest.raises(ValidationError):
        RetrieveRequest.model_validate({"user_id": "u", "query": "toolong"}, context=context)
    with pytest.raises(ValidationError) as caught:
        SummariesRequest.model_validate({"user_id": "u", "limit": 3}, context=context)
    assert error_fields(caught.value) == {"limit"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("user_message", "   "),
        ("agent_message", ""),
        ("timestamp", "2026-01-01T10:00:00"),
        ("metadata", {"k": "v" * 5000}),
    ],
)
def test_bad_turn_fields_are_refused(field: str, value: object):
    with pytest.raises(ValidationError) as caught:
        StoreTurnRequest.model_validate({**TURN, field: value})
    assert error_fields(caught.value) == {field}


def test_top_k_must_be_positive():
    with pytest.raises(ValidationError):
        RetrieveRequest(user_id="u", query="q", top_k=0)
