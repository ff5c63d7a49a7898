"""Import the Functions app and index its functions, as the Python worker does with `app.get_functions()`."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

logger = logging.getLogger(__name__)

ALL_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class AppLoadError(RuntimeError):
    """The app module could not be imported or holds no FunctionApp."""


@dataclass
class HttpFunction:
    """An HTTP-triggered function."""

    name: str
    route: str
    methods: tuple[str, ...]
    auth_level: str  # "anonymous" | "function" | "admin"
    trigger_name: str
    client_binding: str | None
    parameters: frozenset[str]
    fn: Callable[..., Any]
    is_async: bool


@dataclass
class ActivityFunction:
    """An activity: `fn(<input_name>=value)`."""

    name: str
    function_name: str
    input_name: str
    parameters: frozenset[str]
    fn: Callable[..., Any]
    is_async: bool


@dataclass
class OrchestratorFunction:
    """An orchestrator: the SDK's `handle(context)` that takes the context JSON and returns the state JSON."""

    name: str
    function_name: str
    trigger_name: str
    handle: Callable[..., Any]


@dataclass
class EntityFunction:
    """An entity: the SDK's `handle(context)` that takes the batch JSON and returns the result JSON."""

    name: str  # lower-cased, as in scheduler ids
    function_name: str
    trigger_name: str
    handle: Callable[..., Any]


@dataclass
class TimerFunction:
    """A timer-triggered function."""

    name: str
    schedule: str
    run_on_startup: bool
    use_monitor: bool | None
    trigger_name: str
    client_binding: str | None
    parameters: frozenset[str]
    fn: Callable[..., Any]
    is_async: bool


@dataclass
class McpToolFunction:
    """An MCP tool trigger (the Functions MCP extension's ``mcpToolTrigger``): the binding as the host reads it."""

    name: str
    tool_name: str
    description: str
    properties: list[dict[str, Any]]  # the binding's toolProperties
    use_result_schema: bool
    trigger_name: str
    client_binding: str | None
    parameters: frozenset[str]
    fn: Callable[..., Any]
    is_async: bool


@dataclass
class FunctionIndex:
    """Every function of the app, by kind."""

    http: list[HttpFunction] = field(default_factory=list)
    activities: dict[str, ActivityFunction] = field(default_factory=dict)
    orchestrators: dict[str, OrchestratorFunction] = field(default_factory=dict)
    entities: dict[str, EntityFunction] = field(default_factory=dict)
    timers: list[TimerFunction] = field(default_factory=list)
    mcp_tools: list[McpToolFunction] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)  # (name, trigger type) the devhost cannot run

    def listing(self) -> list[tuple[str, str]]:
        """(function name, trigger type) of every function in the app, in registration order."""
        names: list[tuple[str, str]] = [(f.name, "httpTrigger") for f in self.http]
        names += [(f.function_name, "orchestrationTrigger") for f in self.orchestrators.values()]
        names += [(f.function_name, "activityTrigger") for f in self.activities.values()]
        names += [(f.function_name, "entityTrigger") for f in self.entities.values()]
        names += [(f.name, "timerTrigger") for f in self.timers]
        names += [(f.name, "mcpToolTrigger") for f in self.mcp_tools]
        return names + self.other


def import_app(spec: str, script_root: Path) -> tuple[Any, Path]:
    """Import the app module and return (its FunctionApp, the module's file).

    `spec` is a module name (resolved from `script_root`, like `func start` does from the project folder) or a path
    to a `.py` file. The app is the module's `app` attribute when it is a FunctionApp, else its only FunctionApp.
    """
    if spec.endswith(".py") or Path(spec).is_file():
        path = Path(spec).resolve()
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        module_name = path.stem
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise AppLoadError(f"Cannot import {path}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    else:
        root = str(script_root.resolve())
        if root not in sys.path:
            sys.path.insert(0, root)
        try:
            module = importlib.import_module(spec)
        except ModuleNotFoundError as missing:
            if missing.name and spec.startswith(missing.name):
                raise AppLoadError(f"No app module {spec!r} under {script_root.resolve()} (see --app)") from missing
            raise
    candidate = getattr(module, "app", None)
    if isinstance(candidate, func.FunctionRegister):
        return candidate, Path(module.__file__ or spec)
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if len(apps) != 1:
        raise AppLoadError(
            f"{module.__name__} must define a FunctionApp named 'app' or exactly one FunctionApp (found {len(apps)})"
        )
    return apps[0], Path(module.__file__ or spec)


def module_file(spec: str, script_root: Path) -> Path | None:
    """The file a module spec points to, found without importing the module itself (parents may be imported)."""
    if spec.endswith(".py") or Path(spec).is_file():
        return Path(spec).resolve()
    root = str(script_root.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        found = importlib.util.find_spec(spec)
    except (ImportError, ValueError):
        return None
    return Path(found.origin) if found and found.origin else None


# get_functions() is not idempotent (a second call raises): index each app object once per process.
_INDEX_CACHE: dict[int, tuple[Any, FunctionIndex]] = {}


def index_app(app: Any) -> FunctionIndex:
    """Build the index of an app from `app.get_functions()` (called once per app object)."""
    cached = _INDEX_CACHE.get(id(app))
    if cached is not None and cached[0] is app:
        return cached[1]
    index = FunctionIndex()
    for function in app.get_functions():
        _add_function(index, function)
    _INDEX_CACHE[id(app)] = (app, index)
    return index


def _parameters(fn: Callable[..., Any]) -> frozenset[str]:
    try:
        return frozenset(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return frozenset()


def _add_function(index: FunctionIndex, function: Any) -> None:
    name = function.get_function_name()
    trigger = function.get_trigger()
    fn = function.get_user_function()
    bindings = function.get_bindings()
    trigger_type = getattr(trigger, "type", None) if trigger is not None else None
    client = next((b.name for b in bindings if b.type == "durableClient"), None)
    parameters = _parameters(fn)
    is_async = inspect.iscoroutinefunction(fn)
    supported = {"httpTrigger", "http", "durableClient", "timerTrigger", "activityTrigger"}
    supported |= {"orchestrationTrigger", "entityTrigger", "mcpToolTrigger"}
    for binding in bindings:
        if binding.type not in supported:
            logger.warning(
                "Function %s: binding '%s' of type %s is not supported by devhost and gets no value",
                name,
                binding.name,
                binding.type,
            )
    if trigger_type == "httpTrigger":
        methods = tuple(_method_name(m) for m in trigger.methods) if trigger.methods else ALL_METHODS
        index.http.append(
            HttpFunction(
                name=name,
                route=(trigger.route or name).strip("/"),
                methods=methods,
                auth_level=_auth_level_name(trigger.auth_level),
                trigger_name=trigger.name,
                client_binding=client,
                parameters=parameters,
                fn=fn,
                is_async=is_async,
            )
        )
    elif trigger_type == "activityTrigger":
        registered = getattr(trigger, "activity", None) or name
        index.activities[registered] = ActivityFunction(registered, name, trigger.name, parameters, fn, is_async)
    elif trigger_type == "orchestrationTrigger":
        registered = getattr(trigger, "orchestration", None) or name
        if trigger.name != "context":
            logger.warning(
                "Orchestrator %s: context_name is %r; the SDK's handler only accepts 'context' and every run will fail",
                name,
                trigger.name,
            )
        index.orchestrators[registered] = OrchestratorFunction(registered, name, trigger.name, fn)
    elif trigger_type == "entityTrigger":
        registered = (getattr(trigger, "entity_name", None) or name).lower()
        if trigger.name != "context":
            logger.warning(
                "Entity %s: context_name is %r; the SDK's handler only accepts 'context' and every batch will fail",
                name,
                trigger.name,
            )
        index.entities[registered] = EntityFunction(registered, name, trigger.name, fn)
    elif trigger_type == "timerTrigger":
        index.timers.append(
            TimerFunction(
                name=name,
                schedule=trigger.schedule,
                run_on_startup=bool(getattr(trigger, "run_on_startup", False)),
                use_monitor=getattr(trigger, "use_monitor", None),
                trigger_name=trigger.name,
                client_binding=client,
                parameters=parameters,
                fn=fn,
                is_async=is_async,
            )
        )
    elif trigger_type == "mcpToolTrigger":
        index.mcp_tools.append(_mcp_tool(name, trigger, client, parameters, fn, is_async))
    else:
        logger.warning("Function %s: trigger type %s is not supported by devhost; it will not run", name, trigger_type)
        index.other.append((name, str(trigger_type)))


def _mcp_tool(
    name: str, trigger: Any, client: str | None, parameters: frozenset[str], fn: Callable[..., Any], is_async: bool
) -> McpToolFunction:
    """An MCP tool trigger from its binding JSON (names read as the host reads them, in any case)."""
    binding = {str(k).lower(): v for k, v in json.loads(json.dumps(trigger.get_dict_repr(), default=str)).items()}
    raw = binding.get("toolproperties")
    properties = json.loads(raw) if isinstance(raw, str) and raw.strip() else []
    return McpToolFunction(
        name=name,
        tool_name=str(binding.get("toolname") or name),
        description=str(binding.get("description") or ""),
        properties=[{str(k)[:1].lower() + str(k)[1:]: v for k, v in p.items()} for p in properties],
        use_result_schema=bool(binding.get("useresultschema", False)),
        trigger_name=trigger.name,
        client_binding=client,
        parameters=parameters,
        fn=fn,
        is_async=is_async,
    )


def _method_name(method: Any) -> str:
    value = getattr(method, "value", method)
    return str(value).upper()


def _auth_level_name(level: Any) -> str:
    value = getattr(level, "value", level)
    text = str(value or "function").lower()
    return text if text in ("anonymous", "function", "admin") else "function"
