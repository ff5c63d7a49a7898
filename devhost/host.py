"""The local host: loads the app, serves its HTTP triggers and the Durable HTTP API, runs the durable back end."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import azure.functions as func
from aiohttp import web
from multidict import CIMultiDict

from devhost.config import apply_settings, load_host_json, load_local_settings
from devhost.durable_api import DurableHttpApi
from devhost.engine import DurableEngine
from devhost.functions import ALL_METHODS, FunctionIndex, HttpFunction, TimerFunction, import_app, index_app
from devhost.functions import module_file as find_module_file
from devhost.invocation import InvocationContext, invocation
from devhost.keys import Keys, authorized, authorized_system, load_keys
from devhost.latency import QueueLatency
from devhost.routing import Route, Router, compile_route
from devhost.store import Store
from devhost.timers import TimerRunner

logger = logging.getLogger(__name__)

DURABLE_PATH = "/runtime/webhooks/durabletask"
HTTP_REASON = "This function was programmatically called via the host APIs."
MAX_REQUEST_BODY = 100 * 1024 * 1024  # the Functions host's limit


@dataclass
class HostOptions:
    """What `python -m devhost` accepts."""

    app: str = "function_app"
    script_root: Path | None = None
    state_dir: Path = Path(".devhost")
    port: int = 7071
    host: str = "127.0.0.1"
    public_hostname: str = "localhost"
    enable_auth: bool = False
    # False: ignore local.settings.json; only the environment counts (hermetic runs such as the end-to-end tests).
    local_settings: bool = True
    # The latency of every Durable hop, as on Azure Storage's queues (devhost.latency). None: from the environment
    # (DEVHOST_DURABLE_LATENCY_MS, DEVHOST_DURABLE_JITTER_MS, DEVHOST_DURABLE_SEED, local.settings.json included),
    # else 0 (at once); jitter None: half the latency; seed None: unseeded.
    durable_latency_ms: float | None = None
    durable_jitter_ms: float | None = None
    durable_seed: int | None = None


class DevHost:
    """One running local host. `await start()`, then `await stop()`."""

    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.index = FunctionIndex()
        self.keys: Keys | None = None
        self.port = options.port
        self.route_prefix = "api"
        self.hub_name = ""
        self.latency = QueueLatency()
        self._store: Store | None = None
        self._engine: DurableEngine | None = None
        self._timers: TimerRunner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._runner: web.AppRunner | None = None
        self._router = Router([])
        self._api: DurableHttpApi | None = None
        self._rpc_path = ""
        self._client_binding = ""
        self._script_root = Path.cwd()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load settings and the app, open the store, start serving and resume durable work."""
        options = self.options
        script_root = options.script_root
        if script_root is None:
            found = find_module_file(options.app, Path.cwd())
            script_root = found.parent if found is not None and options.app.endswith(".py") else Path.cwd()
        self._script_root = script_root.resolve()
        applied = apply_settings(load_local_settings(self._script_root)) if options.local_settings else []
        if applied:
            logger.debug("Settings from local.settings.json: %s", ", ".join(sorted(applied)))
        host_json = load_host_json(self._script_root)
        self.latency = QueueLatency.from_settings(
            options.durable_latency_ms, options.durable_jitter_ms, options.durable_seed
        )
        self.route_prefix = host_json.route_prefix
        self.hub_name = host_json.hub_name
        app, _ = import_app(options.app, self._script_root)
        self.index = index_app(app)
        self._router = Router([self._compile(f) for f in self.index.http])
        state_dir = options.state_dir.resolve()
        if options.enable_auth:
            self.keys = load_keys(state_dir)
        self._store = Store(state_dir, self.hub_name)
        self._executor = ThreadPoolExecutor(
            max_workers=min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="devhost-worker"
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((options.host, options.port))
        self.port = sock.getsockname()[1]
        self._engine = DurableEngine(self._store, self.index, self._executor, self._script_root, self.latency)
        self._configure_durable_api()
        web_app = web.Application(client_max_size=MAX_REQUEST_BODY)
        web_app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(web_app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        await self._engine.start()
        self._timers = TimerRunner(self.index.timers, self._store, self._invoke_timer)
        self._timers.start()

    async def stop(self) -> None:
        """Stop timers, the server and the durable back end; close the store."""
        try:
            if self._timers is not None:
                await self._timers.stop()
            if self._runner is not None:
                await self._runner.cleanup()
        finally:
            await self._stop_back_end()

    async def _stop_back_end(self) -> None:
        if self._engine is not None:
            await self._engine.stop()
        try:
            from azure.durable_functions.models.utils import http_utils

            await http_utils._close_session()
        except Exception:  # the SDK's private helper may change; closing is best effort
            logger.debug("could not close the SDK's client session", exc_info=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._store is not None:
            self._store.close()

    # ------------------------------------------------------------------ URLs and banner

    @property
    def base_url(self) -> str:
        """`http://localhost:<port>`."""
        return f"http://{self.options.public_hostname}:{self.port}"

    @property
    def client_binding(self) -> str:
        """The durable-client binding JSON string every client function receives."""
        return self._client_binding

    def function_url(self, route: str) -> str:
        """The public URL of an HTTP route."""
        prefix = f"/{self.route_prefix}" if self.route_prefix else ""
        return f"{self.base_url}{prefix}/{route}"

    def banner(self) -> str:
        """The start-up listing: the functions with their URLs, then the keys when auth is on."""
        lines = ["", "Functions:", ""]
        for function in self.index.http:
            methods = ",".join(function.methods) if function.methods != ALL_METHODS else "GET,POST,PUT,PATCH,DELETE"
            lines.append(f"  {function.name}: [{methods}] {self.function_url(function.route)}")
        for name, trigger_type in self.index.listing():
            if trigger_type != "httpTrigger":
                lines.append(f"  {name}: {trigger_type}")
        lines.append("")
        lines.append(f"Durable task hub '{self.hub_name}': {self.base_url}{DURABLE_PATH}/")
        lines.append(self.latency.describe())
        if self.keys is not None:
            lines.append("Function keys are required (--enable-auth):")
            lines.append(f"  master key: {self.keys.master}")
            for name, key in self.keys.function_keys.items():
                lines.append(f"  function key '{name}': {key}")
        else:
            lines.append("Function keys are not checked (run with --enable-auth to check them).")
        return "\n".join(lines) + "\n\n"

    def _compile(self, function: HttpFunction) -> Route:
        template = f"{self.route_prefix}/{function.route}" if self.route_prefix else function.route
        return compile_route(template, function)

    def _configure_durable_api(self) -> None:
        assert self._engine is not None
        public_base = f"{self.base_url}{DURABLE_PATH}"
        query = f"taskHub={self.hub_name}&connection=Storage"
        required = ""
        if self.keys is not None:
            required = f"code={self.keys.durable_key}"
            query += f"&{required}"
            # The SDK posts to rpcBaseUrl + path and cannot add a key: give it a private path instead.
            self._rpc_path = f"/_devhost/rpc/{secrets.token_urlsafe(16)}"
            rpc_base = f"http://127.0.0.1:{self.port}{self._rpc_path}/"
        else:
            rpc_base = f"http://127.0.0.1:{self.port}{DURABLE_PATH}/"
        self._api = DurableHttpApi(self._engine, self.hub_name, public_base, query)
        creation = f"{public_base}/orchestrators/{{functionName}}[/{{instanceId}}]"
        suffix = f"?{required}" if required else ""
        self._client_binding = json.dumps(
            {
                "taskHubName": self.hub_name,
                "creationUrls": {
                    "createNewInstancePostUri": f"{creation}{suffix}",
                    "createAndWaitOnNewInstancePostUri": (
                        f"{creation}?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}"
                        + (f"&{required}" if required else "")
                    ),
                },
                "managementUrls": self._api.management_urls("INSTANCEID"),
                "baseUrl": public_base,
                "requiredQueryStringParameters": required,
                "rpcBaseUrl": rpc_base,
                "httpBaseUrl": "",
                "maxGrpcMessageSizeInBytes": 0,
                "grpcHttpClientTimeout": "00:01:40",
            }
        )

    # ------------------------------------------------------------------ requests

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        assert self._api is not None
        if self._rpc_path and (path == self._rpc_path or path.startswith(self._rpc_path + "/")):
            return await self._api.handle(request, path[len(self._rpc_path) :])
        if path == DURABLE_PATH or path.startswith(DURABLE_PATH + "/"):
            if self.keys is not None and not authorized_system(self.keys, request):
                return web.Response(status=401)
            return await self._api.handle(request, path[len(DURABLE_PATH) :])
        if path.rstrip("/") == "/admin/host/status":
            if self.keys is not None and not authorized(self.keys, "admin", request):
                return web.Response(status=401)
            return web.json_response({"state": "Running", "processUptime": 0, "devhost": True})
        if self.route_prefix:
            prefix = "/" + self.route_prefix.lower()
            lowered = path.lower()
            if lowered != prefix and not lowered.startswith(prefix + "/"):
                return web.Response(status=404)
        matches = self._router.match(path)
        if not matches:
            return web.Response(status=404)
        for route, values in matches:
            function: HttpFunction = route.target
            if request.method in function.methods:
                if self.keys is not None and not authorized(self.keys, function.auth_level, request, function.name):
                    return web.Response(status=401)
                return await self._invoke_http(function, request, values)
        allowed = sorted({m for route, _ in matches for m in route.target.methods})
        return web.Response(status=405, headers={"Allow": ", ".join(allowed)})

    async def _invoke_http(
        self, function: HttpFunction, request: web.Request, route_values: dict[str, str]
    ) -> web.StreamResponse:
        body = await request.read()
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            lowered = key.lower()
            headers[lowered] = f"{headers[lowered]}, {value}" if lowered in headers else value
        params: dict[str, str] = {}
        for key, value in request.query.items():
            params.setdefault(key, value)
        http_request = func.HttpRequest(
            request.method,
            str(request.url),
            headers=headers,
            params=params,
            route_params=route_values,
            body=body,
        )
        with invocation(function.name, HTTP_REASON) as outcome:
            kwargs: dict[str, Any] = {function.trigger_name: http_request}
            if function.client_binding:
                kwargs[function.client_binding] = self._client_binding
            if "context" in function.parameters and "context" not in kwargs:
                kwargs["context"] = InvocationContext(outcome.invocation_id, function.name, self._script_root)
            try:
                result = await self._call(function.fn, function.is_async, kwargs)
                return _to_web_response(result, function.name)
            except Exception:
                outcome.failed = True
                logger.exception("Function %s raised an exception", function.name)
                return web.Response(status=500, text="Internal Server Error")

    async def _invoke_timer(self, timer: TimerFunction, request: func.TimerRequest, reason: str) -> None:
        with invocation(timer.name, reason) as outcome:
            kwargs: dict[str, Any] = {timer.trigger_name: request}
            if timer.client_binding:
                kwargs[timer.client_binding] = self._client_binding
            if "context" in timer.parameters and "context" not in kwargs:
                kwargs["context"] = InvocationContext(outcome.invocation_id, timer.name, self._script_root)
            try:
                await self._call(timer.fn, timer.is_async, kwargs)
            except Exception:
                outcome.failed = True
                logger.exception("Function %s raised an exception", timer.name)

    async def _call(self, fn: Any, is_async: bool, kwargs: dict[str, Any]) -> Any:
        if is_async:
            return await fn(**kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, **kwargs))


def _to_web_response(result: Any, function_name: str) -> web.StreamResponse:
    """Map a function's return value to the HTTP response, as the worker's HttpResponseConverter does."""
    if result is None:
        return web.Response(status=204)
    if isinstance(result, func.HttpResponse):
        headers: CIMultiDict[str] = CIMultiDict()
        for key, value in result.headers.items():
            headers.add(key, value)
        if "content-type" not in headers:
            mimetype = result.mimetype or "text/plain"
            headers["Content-Type"] = (
                f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype
            )
        body = result.get_body()
        if result.status_code in (204, 304) or not body:
            return web.Response(status=result.status_code, headers=headers)
        return web.Response(status=result.status_code, body=body, headers=headers)
    if isinstance(result, str):
        return web.Response(status=200, text=result)
    if isinstance(result, bytes | bytearray):
        return web.Response(status=200, body=bytes(result), content_type="application/octet-stream")
    raise TypeError(f"Function {function_name} returned {type(result).__name__}: expected HttpResponse, str or None")
