import pytest
from pydantic import ValidationError

from memory_core.config import Settings
from memory_core.models import (
    InsightsRequest,
    RetrieveRequest,
    StartSessionRequest,
    StoreTurnRequest,
    SummariesRequest,
    limits_context,
)

TURN = {"user_id": "user123", "session_id": "abc123", "user_message": "What is a 401k?", "agent_message": "A plan."}


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


@pytest.mark.parametrize("good", ["a", "user123", "A.b_c:d@e-f", "x" * 128])
def test_ids_accept_the_documented_alphabet(good: str):
    assert StartSessionRequest(user_id=good).user_id == good


@pytest.mark.parametrize("bad", ["", "x" * 129, "has space", "slash/", "ünïcode", "semi;colon", "new\nline"])
def test_ids_outside_the_alphabet_are_refused_naming_the_field(bad: str):
    with pytest.raises(ValidationError) as caught:
        StartSessionRequest(user_id=bad)
    assert error_fields(caught.value) == {"user_id"}


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
