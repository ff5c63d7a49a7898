"""What the Functions host indexes: every function, its trigger and bindings, and the files the host reads."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from memory_core.config import Settings

ROOT = Path(__file__).resolve().parents[2]

HTTP_ROUTES = {
    # function name: (route, method, auth level, has a durable client)
    "start_session": ("sessions/start", "POST", func.AuthLevel.FUNCTION, False),
    "end_session": ("sessions/end", "POST", func.AuthLevel.FUNCTION, True),
    "reflection_status": ("sessions/reflection", "GET", func.AuthLevel.FUNCTION, True),
    "get_context": ("memory/context", "POST", func.AuthLevel.FUNCTION, False),
    "store_turn": ("memory/store", "POST", func.AuthLevel.FUNCTION, True),
    "retrieve": ("memory/retrieve", "POST", func.AuthLevel.FUNCTION, False),
    "insights": ("insights", "POST", func.AuthLevel.FUNCTION, False),
    "summaries": ("summaries", "POST", func.AuthLevel.FUNCTION, False),
    "health": ("health", "GET", func.AuthLevel.ANONYMOUS, False),
    "openapi": ("openapi.json", "GET", func.AuthLevel.ANONYMOUS, False),
    "stats": ("stats", "GET", func.AuthLevel.ADMIN, False),
    "forget_user": ("users/{user_id}", "DELETE", func.AuthLevel.ADMIN, True),
    "forget_user_by_query": ("users", "DELETE", func.AuthLevel.ADMIN, True),
    "export_user": ("users/{user_id}/export", "GET", func.AuthLevel.ADMIN, False),
    "export_user_by_query": ("users", "GET", func.AuthLevel.ADMIN, False),
    # the memory inspector: its page and listing need the admin key; its script and stylesheet hold no data
    "inspector_page": ("inspector", "GET", func.AuthLevel.ADMIN, False),
    "inspector_users": ("inspector/users", "GET", func.AuthLevel.ADMIN, False),
    "inspector_asset": ("inspector/assets/{name}", "GET", func.AuthLevel.ANONYMOUS, False),
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
    expected = {*HTTP_ROUTES, *ENTITIES, *ORCHESTRATORS, *ACTIVITIES, *MCP_TOOLS, "cleanup_timer"}
    assert set(functions) == expected


@pytest.mark.parametrize("name", sorted(HTTP_ROUTES))
def test_http_function_has_its_route_method_and_auth_level(functions: dict[str, Any], name: str) -> None:
    route, method, auth, has_client = HTTP_ROUTES[name]
    fn = functions[name]
    trigger = fn.get_trigger()
    assert trigger.type == "httpTrigger"
    assert trigger.route == route
    assert [m.value for m in trigger.methods] == [method]
    assert trigger.auth_level == auth
    expected = ["durableClient", "http", "httpTrigger"] if has_client else ["http", "httpTrigger"]
    assert _binding_types(fn) == expected
    raw = [json.loads(b) for b in fn.get_raw_bindings()]
    http_in = next(b for b in raw if b["type"] == "httpTrigger")
    assert http_in["authLevel"] == auth.name and http_in["route"] == route
    if has_client:
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
