"""Every private name of the Functions and Durable SDKs this repository uses, with what it relies on.

Each test fails when the installed SDK changes the name or the behaviour the workaround exists for; the comment at
the place of use says why no public API does. When a test here fails because the SDK now offers a public way (or no
longer misbehaves), move the place of use to it and delete the test.
"""

from __future__ import annotations

import abc
import inspect
import json
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest
from azure.durable_functions.models.utils import http_utils
from azure.functions import _abc

from devhost.invocation import InvocationContext
from orchestrations.entities import _raw_input
from orchestrations.host import instance_management
from orchestrations.management import HttpInstanceManagement

# The SDK warns when get_input() decodes without expected_type; the entity reads plain JSON.
pytestmark = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")

RPC_BASE_URL = "http://127.0.0.1:17071/durabletask/"


def run_entity(body: Callable[[df.DurableEntityContext], None], inputs: list[Any]) -> list[dict[str, Any]]:
    """Run one operation per input through the SDK's own entity handle, encoded as the Durable extension does.

    The batch's ``input`` is JSON text of a JSON string of the value, or null for an operation without input.
    """
    handle = df.Entity.create(body)
    batch = [{"name": "op", "input": None if value is None else json.dumps(json.dumps(value))} for value in inputs]
    context = {"self": {"name": "probe", "key": "k"}, "state": None, "exists": False, "batch": batch}
    results: list[dict[str, Any]] = json.loads(handle(json.dumps(context)))["results"]
    return results


# -- orchestrations/entities.py: _raw_input reads DurableEntityContext._input ----------------------------------------


def test_entity_get_input_still_fails_on_an_operation_without_input() -> None:
    # The reason for _raw_input: when this stops failing (get_input answers None), use get_input() alone.
    def body(context: df.DurableEntityContext) -> None:
        context.set_result(context.get_input())

    without, with_input = run_entity(body, [None, {"a": 1}])
    assert without["isError"] is True and "NoneType" in json.loads(without["result"])
    assert with_input["isError"] is False and json.loads(with_input["result"]) == {"a": 1}


def test_entity_context_input_holds_the_raw_input_and_none_without_one() -> None:
    seen: list[Any] = []

    def body(context: df.DurableEntityContext) -> None:
        seen.append((context._input, _raw_input(context)))

    results = run_entity(body, [None, {"turn_count": 3}])
    assert [r["isError"] for r in results] == [False, False]
    assert seen == [(None, None), (json.dumps(json.dumps({"turn_count": 3})), {"turn_count": 3})]


# -- orchestrations/host.py: instance_management reads DurableOrchestrationClient._orchestration_bindings -------------


def client_binding(rpc_base_url: str | None) -> str:
    return json.dumps(
        {
            "taskHubName": "hub",
            "creationUrls": {},
            "managementUrls": {},
            "rpcBaseUrl": rpc_base_url,
            "baseUrl": "http://localhost:7071/runtime/webhooks/durabletask",
            "requiredQueryStringParameters": "",
        }
    )


def test_durable_client_keeps_the_rpc_base_url_in_its_private_bindings_only() -> None:
    client = df.DurableOrchestrationClient(client_binding(RPC_BASE_URL))
    assert client._orchestration_bindings.rpc_base_url == RPC_BASE_URL
    # When the client offers it publicly, instance_management should read that instead.
    public = [name for name in dir(client) if not name.startswith("_")]
    assert not [name for name in public if "rpc" in name.lower() or "binding" in name.lower()]
    assert not [name for name in public if getattr(client, name, None) == RPC_BASE_URL]


async def test_instance_management_talks_to_the_clients_rpc_base_url() -> None:
    management = instance_management(df.DurableOrchestrationClient(client_binding(RPC_BASE_URL)))
    try:
        assert isinstance(management, HttpInstanceManagement)
        assert management._url("i1") == f"{RPC_BASE_URL}instances/i1"
    finally:
        await management.aclose()


# -- devhost/host.py: _stop_back_end calls http_utils._close_session -------------------------------------------------


async def test_durable_sdk_keeps_one_http_session_that_only_its_private_helper_closes() -> None:
    assert inspect.iscoroutinefunction(http_utils._close_session)
    session = await http_utils._get_session()
    assert await http_utils._get_session() is session  # one session per process, made on the first call's loop
    await http_utils._close_session()
    assert session.closed and http_utils._client_session is None
    # No public close (a shutdown hook, a close on the client) that the local host could call instead.
    assert not [name for name in vars(http_utils) if not name.startswith("_") and "close" in name.lower()]
    assert not [name for name in dir(df.DurableOrchestrationClient) if "close" in name.lower()]


# -- devhost/invocation.py: InvocationContext implements azure.functions._abc.TraceContext and RetryContext ----------


def test_functions_context_returns_abcs_that_only_the_private_module_defines() -> None:
    hints = {
        name: typing.get_type_hints(getattr(func.Context, name).fget)["return"]
        for name in ("trace_context", "retry_context")
    }
    assert hints == {"trace_context": _abc.TraceContext, "retry_context": _abc.RetryContext}
    assert _abc.TraceContext.__abstractmethods__ == {"trace_parent", "trace_state", "attributes"}
    assert _abc.RetryContext.__abstractmethods__ == {"retry_count", "max_retry_count", "exception"}
    assert isinstance(_abc.TraceContext, abc.ABCMeta) and isinstance(_abc.RetryContext, abc.ABCMeta)
    # When azure.functions exports them publicly, devhost/invocation.py should import them from there.
    exported = [getattr(func, name) for name in dir(func) if not name.startswith("_")]
    assert _abc.TraceContext not in exported and _abc.RetryContext not in exported


def test_the_local_hosts_context_is_a_complete_functions_context() -> None:
    context = InvocationContext("id", "fn", Path("."), trace_parent="00-ab-cd-01")
    assert isinstance(context, func.Context)
    assert isinstance(context.trace_context, _abc.TraceContext) and context.trace_context.trace_parent == "00-ab-cd-01"
    assert isinstance(context.retry_context, _abc.RetryContext) and context.retry_context.retry_count == 0
