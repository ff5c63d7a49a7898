"""What the Functions host indexes: every function, its trigger and bindings, and the files the host reads."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from http_api import openapi
from memory_core.config import Settings

ROOT = Path(__file__).resolve().parents[2]

# The HTTP functions (name: has a durable client). The API's routes, methods and key levels are declared once, in
# http_api.openapi.ENDPOINTS, and the decorators take them from there; the tests below check what the host indexes.
HTTP_FUNCTIONS = {
    "start_session": False,
    "end_session": True,
    "reflection_status": True,
    "get_context": False,
    "store_turn": True,
    "retrieve": False,
    "insights": False,
    "summaries": False,
    "health": False,
    "openapi": False,
    "stats": False,
    "forget_user": True,
    "forget_user_by_query": True,
    "export_user": False,
    "export_user_by_query": False,
    "inspector_page": False,
    "inspector_users": False,
    "inspector_asset": False,
}
# Served outside the API's table: the OpenAPI document itself, and the memory inspector's page (admin key) and its
# script and stylesheet (no data in them).
OTHER_ROUTES = {
    ("openapi.json", "GET", func.AuthLevel.ANONYMOUS),
    ("inspector", "GET", func.AuthLevel.ADMIN),
    ("inspector/assets/{name}", "GET", func.AuthLevel.ANONYMOUS),
}
ENTITIES = {"session_entity": "session"}
ORCHESTRATORS = {"process_turns", "reflect_session", "evict_session"}
ACTIVITIES = {"index_turns", "compact_chunk", "evict", "reflect"}
# MCP tool triggers (mcp_api): function name -> tool name; tests/functions/test_mcp_tools.py checks each one.
MCP_TOOLS = {
    "mcp_get_memory_context": "get_memory_context",
    "mcp_store_turn": "store_turn",
    "mcp_search_memory": "search_memory",
    "mcp_list_insights": "list_insights",
    "mcp_list_session_summaries": "list_session_summaries",
    "mcp_end_session": "end_session",
    "mcp_get_reflection_status": "get_reflection_status",
    "mcp_forget_user": "forget_user",
}
HOST_ONLY_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage", "AzureWebJobsFeatureFlags"}


def _binding_types(fn: Any) -> list[str]:
    return sorted(b.type for b in fn.get_bindings())


def test_the_app_has_exactly_the_expected_functions(functions: dict[str, Any]) -> None:
    expected = {*HTTP_FUNCTIONS, *ENTITIES, *ORCHESTRATORS, *ACTIVITIES, *MCP_TOOLS, "cleanup_timer"}
    assert set(functions) == expected


def _served(fn: Any) -> tuple[str, str, func.AuthLevel]:
    trigger = fn.get_trigger()
    assert trigger.type == "httpTrigger"
    (method,) = trigger.methods
    raw = next(json.loads(b) for b in fn.get_raw_bindings() if json.loads(b)["type"] == "httpTrigger")
    assert raw["authLevel"] == trigger.auth_level.name and raw["route"] == trigger.route
    return str(trigger.route), method.value, trigger.auth_level


def test_http_functions_serve_exactly_the_openapi_endpoints_and_the_pages(functions: dict[str, Any]) -> None:
    served = [_served(functions[name]) for name in HTTP_FUNCTIONS]
    declared = [(e.path.lstrip("/"), e.method.upper(), openapi.AUTH_LEVELS[e.auth]) for e in openapi.ENDPOINTS]
    assert sorted(served, key=str) == sorted([*declared, *OTHER_ROUTES], key=str)
    assert ("memory/store", "POST", func.AuthLevel.FUNCTION) in served
    assert ("stats", "GET", func.AuthLevel.ADMIN) in served and ("health", "GET", func.AuthLevel.ANONYMOUS) in served


def test_a_route_missing_from_the_openapi_table_fails_at_import() -> None:
    with pytest.raises(LookupError, match="POST /memory/forget"):
        openapi.route(df.Blueprint(), "POST /memory/forget")


@pytest.mark.parametrize("name", sorted(HTTP_FUNCTIONS))
def test_http_function_has_a_durable_client_where_it_needs_one(functions: dict[str, Any], name: str) -> None:
    fn = functions[name]
    expected = ["durableClient", "http", "httpTrigger"] if HTTP_FUNCTIONS[name] else ["http", "httpTrigger"]
    assert _binding_types(fn) == expected
    if HTTP_FUNCTIONS[name]:
        # The SDK wraps a client function; the wrapper keeps the user's async function.
        assert callable(fn.get_user_function().client_function)


@pytest.mark.parametrize(("name", "tool_name"), sorted(MCP_TOOLS.items()))
def test_mcp_tool_triggers_have_their_tool_names(functions: dict[str, Any], name: str, tool_name: str) -> None:
    trigger = functions[name].get_trigger()
    assert trigger.type == "mcpToolTrigger"
    assert trigger.tool_name == tool_name
    assert trigger.name == "context"


@pytest.mark.parametrize(("name", "entity_name"), sorted(ENTITIES.items()))
def test_entities_are_registered_under_their_durable_names(
    functions: dict[str, Any], name: str, entity_name: str
) -> None:
    trigger = functions[name].get_trigger()
    assert trigger.type == "entityTrigger"
    assert trigger.entity_name == entity_name
    # The SDK's generated handle has a parameter literally named "context".
    assert trigger.name == "context"
    assert _binding_types(functions[name]) == ["entityTrigger"]


@pytest.mark.parametrize("name", sorted(ORCHESTRATORS))
def test_orchestrators_are_registered_under_their_names(functions: dict[str, Any], name: str) -> None:
    trigger = functions[name].get_trigger()
    assert trigger.type == "orchestrationTrigger"
    assert trigger.orchestration == name
    assert trigger.name == "context"
    assert callable(functions[name].get_user_function().orchestrator_function)


@pytest.mark.parametrize("name", sorted(ACTIVITIES))
def test_activities_are_registered_under_their_names(functions: dict[str, Any], name: str) -> None:
    trigger = functions[name].get_trigger()
    assert trigger.type == "activityTrigger"
    assert trigger.activity == name


def test_cleanup_timer_schedule_is_an_app_setting_and_does_not_run_on_startup(functions: dict[str, Any]) -> None:
    fn = functions["cleanup_timer"]
    trigger = fn.get_trigger()
    assert trigger.type == "timerTrigger"
    assert trigger.schedule == "%CLEANUP_SCHEDULE%"
    assert trigger.run_on_startup is False
    assert _binding_types(fn) == ["durableClient", "timerTrigger"]


def test_function_app_module_is_only_the_host() -> None:
    source = (ROOT / "function_app.py").read_text()
    assert len(source.splitlines()) < 40
    assert "DFApp" in source and "register_functions" in source


def test_memory_core_does_not_import_the_functions_sdks() -> None:
    offenders = []
    for path in sorted((ROOT / "memory_core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                if module == "azure" or module.startswith(("azure.functions", "azure.durable_functions")):
                    offenders.append(f"{path.relative_to(ROOT)}: {module}")
    assert offenders == []


def test_host_json_serves_routes_at_the_root_and_names_the_hub_by_setting() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == ""
    assert host["extensionBundle"]["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    assert host["extensions"]["durableTask"]["hubName"] == "%DURABLE_HUB_NAME%"
    # DurableSessionHost.submit_turn relies on a running instance not being replaced.
    assert host["extensions"]["durableTask"]["overridableExistingInstanceStates"] == "NonRunningStates"


def test_local_settings_sample_and_settings_name_the_same_settings() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    app_settings = set(sample) - HOST_ONLY_SETTINGS
    fields = set(Settings.model_fields)
    assert app_settings - fields == set(), "settings in the sample that Settings does not read"
    assert fields - app_settings == set(), "Settings fields missing from the sample"
    assert HOST_ONLY_SETTINGS <= set(sample)


def test_local_settings_sample_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    for name, value in sample.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.CLEANUP_SCHEDULE == sample["CLEANUP_SCHEDULE"]
    assert settings.DURABLE_HUB_NAME == sample["DURABLE_HUB_NAME"]
