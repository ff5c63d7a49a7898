"""The client's response types (memory_client/schemas.py) name the same fields as the service's OpenAPI document.

memory_client is installed on its own, without memory_core, so its TypedDicts are written out rather than imported;
this test is what keeps the copy true: a field added to, renamed in or removed from a response model fails here.
"""

from __future__ import annotations

from typing import get_type_hints

import pytest

from http_api.openapi import openapi_document
from memory_client import schemas

# client TypedDict -> the OpenAPI component of the service's answer
TWINS = {
    "ChatMessage": "Message",
    "MemoryContext": "ContextResponse",
    "StoreResult": "StoreTurnResponse",
    "ReflectionHandle": "EndSessionResponse",
    "ReflectionStatus": "ReflectionStatusResponse",
    "RetrievedItem": "RetrievedItem",
    "RetrieveResult": "RetrieveResponse",
    "InsightItem": "InsightItem",
    "InsightsResult": "InsightsResponse",
    "SummaryItem": "SummaryItem",
    "SummariesResult": "SummariesResponse",
    "ForgetPending": "ForgetPending",
    "ForgetResult": "ForgetResponse",
}


def test_every_client_type_has_a_twin_in_the_openapi_document():
    typed_dicts = {n for n, v in vars(schemas).items() if isinstance(v, type) and hasattr(v, "__total__")}
    assert typed_dicts - {"ReflectionOutput"} == set(TWINS)  # ReflectionOutput is the status's free-form output


@pytest.mark.parametrize(("client", "component"), sorted(TWINS.items()))
def test_a_client_type_names_the_fields_of_its_twin(client: str, component: str):
    properties = openapi_document()["components"]["schemas"][component]["properties"]
    assert set(get_type_hints(getattr(schemas, client))) == set(properties)
