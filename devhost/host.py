"""The local host: loads the app, serves its HTTP triggers and the Durable HTTP API, runs the durable back end.

A `DevHost` plays one of three roles (`HostOptions.role`):

* `"single"` (the default of a `DevHost` made in code, e.g. by the tests, and `python -m devhost --single-process`):
  one process serves the HTTP triggers and the Durable HTTP API and runs the durable back end (`DurableEngine`:
  orchestrations, activities, entities, durable timers) and the timer triggers, all on one event loop;
* `"http"` (what `python -m devhost` runs): the HTTP triggers on the public port, and a transparent reverse proxy
  (`devhost.proxy`) of the Durable HTTP API paths to a durable worker process that this host starts, watches and
  stops (`devhost.supervisor`). This is Azure Flex Consumption's `http` group;
* `"durable"` (that worker, `python -m devhost.worker`): the durable back end, the timer triggers and the Durable HTTP
  API on an internal loopback port; `HostOptions.port` is then the host's public port, which its URLs name. This is
  the `durable` group. It holds the state directory's lock (waiting up to `WORKER_LOCK_WAIT` for it).

The durable-client binding's `rpcBaseUrl`, the target of the SDK's client calls made inside functions, is the
durable API's own port (the worker's in the split roles: no proxy hop); its public management URLs name the public
port.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import azure.functions as func
from aiohttp import web
from multidict import CIMultiDict

from devhost import easyauth
from devhost.config import SettingError, apply_settings, load_host_json, load_local_settings
from devhost.durable_api import DurableHttpApi, management_urls
from devhost.easyauth import UnknownTokenError, app_headers, easy_auth_enabled, principal_of
from devhost.engine import DurableEngine
from devhost.errors import error_response
from devhost.functions import (
    ALL_METHODS,
    AppLoadError,
    FunctionIndex,
    HttpFunction,
    McpToolFunction,
    TimerFunction,
    import_app,
    index_app,
)
from devhost.functions import module_file as find_module_file
from devhost.invocation import InvocationContext, invocation
from devhost.keys import Keys, authorized, authorized_system, load_keys
from devhost.latency import QueueLatency
from devhost.mcp import ClientStates, McpOptions, McpServer
from devhost.mcp_http import MCP_PATH, McpEndpoint, is_mcp_path
from devhost.proxy import ReverseProxy
from devhost.quiet import QuietGate, RequestBoard
from devhost.routing import RequestPathError, Route, Router, compile_route, decode_path
from devhost.store import StateDirInUseError, Store
from devhost.supervisor import DurableWorker, WorkerStartError
from devhost.timers import TimerRunner

logger = logging.getLogger(__name__)

DURABLE_PATH = "/runtime/webhooks/durabletask"
HTTP_REASON = "This function was programmatically called via the host APIs."
MCP_REASON = "New MCP tool call request received."
MAX_REQUEST_BODY = 100 * 1024 * 1024  # the Functions host's limit
RPC_PREFIX = "/_devhost/rpc/"  # the private path of the SDK's client calls with --enable-auth
WORKER_LOCK_WAIT = 15.0  # seconds a durable worker waits for the state directory (its killed predecessor exiting)
LOOPBACK = "127.0.0.1"

Role = Literal["single", "http", "durable"]

# What makes a host fail to start with a message rather than a traceback.
STARTUP_ERRORS: tuple[type[Exception], ...] = (
    AppLoadError,
    SettingError,
    StateDirInUseError,
    WorkerStartError,
    OSError,
)


@dataclass
class HostOptions:
    """What `python -m devhost` accepts, and the role this host plays (see the module docstring)."""

    app: str = "function_app"
    script_root: Path | None = None
    state_dir: Path = Path(".devhost")
    port: int = 7071
    host: str = "127.0.0.1"
    public_hostname: str = "localhost"
    enable_auth: bool = False
    # Stand in for App Service Authentication in front of the HTTP triggers (devhost.easyauth). None: from the
    # environment (DEVHOST_EASY_AUTH, local.settings.json included), else off.
    easy_auth: bool | None = None
    # False: ignore local.settings.json; only the environment counts (hermetic runs such as the end-to-end tests).
    local_settings: bool = True
    # The latency of every Durable hop, as on Azure Storage's queues (devhost.latency). None: from the environment
    # (DEVHOST_DURABLE_LATENCY_MS, DEVHOST_DURABLE_JITTER_MS, DEVHOST_DURABLE_SEED, local.settings.json included),
    # else 0 (at once); jitter None: half the latency; seed None: unseeded.
    durable_latency_ms: float | None = None
    durable_jitter_ms: float | None = None
    durable_seed: int | None = None
    # "single": one process (the default here; `--single-process`); "http": HTTP triggers + a durable worker process
    # (`python -m devhost`); "durable": that worker, whose `port`/`public_hostname` are the public ones.
    role: Role = "single"

    def to_json(self) -> str:
        """The options as JSON (paths as text), for the durable worker's command line."""
        values = dataclasses.asdict(self)
        for name in ("script_root", "state_dir"):
            values[name] = None if values[name] is None else str(values[name])
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str) -> HostOptions:
        """The options `to_json` wrote."""
        values = json.loads(text)
        for name in ("script_root", "state_dir"):
            values[name] = None if values[name] is None else Path(values[name])
        return cls(**values)


class DevHost:
    """One running local host in one of its roles (`HostOptions.role`). `await start()`, then `await stop()`."""

    def __init__(self, options: HostOptions) -> None:
        self.options = options
        self.index = FunctionIndex()
        self.keys: Keys | None = None
        self.easy_auth = False
        self.port = options.port
        # the port the Durable HTTP API is served on: this host's own, or the durable worker's internal one
        self.durable_port = options.port
        self.route_prefix = "api"
        self.hub_name = ""
        self.latency = QueueLatency()
        self._store: Store | None = None
        self._engine: DurableEngine | None = None
        self._timers: TimerRunner | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._socket: socket.socket | None = None
        self._runner: web.AppRunner | None = None
        self._router = Router([])
        self._api: DurableHttpApi | None = None
        self._worker: DurableWorker | None = None
        self._proxy: ReverseProxy | None = None
        self._mcp: McpEndpoint | None = None
        self._board: RequestBoard | None = None  # the "http" role's requests, for the worker (devhost.quiet)
        self._quiet: QuietGate | None = None  # the "durable" role's view of that board
        self._rpc_path = ""
        self._client_binding = ""
        self._script_root = Path.cwd()

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, durable: bool = True) -> None:
        """Load settings and the app, start the durable back end (here or in its worker process), start serving.

        Args:
            durable: False leaves this host's durable back end and timer triggers stopped until `start_durable()`:
                orchestrations it is asked to start stay Pending, and signals stay queued (tests use it).

        Raises:
            AppLoadError, SettingError, StateDirInUseError, WorkerStartError, OSError: the host cannot start (see
                `STARTUP_ERRORS`); call `stop()` then, to release what was taken.
        """
        self._load_settings()
        self._bind()
        if self.options.role == "http":
            self._board = RequestBoard(self.options.state_dir.resolve())
            self._spawn_worker()  # it starts while this process imports the app
        app, _ = import_app(self.options.app, self._script_root)
        self.index = index_app(app)
        self._router = Router([self._compile(f) for f in self.index.http])
        if self.options.role != "durable" and self.index.mcp_tools:
            self._mcp = self._mcp_endpoint()
        self._executor = ThreadPoolExecutor(
            max_workers=min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="devhost-worker"
        )
        if self._worker is not None:
            await self._connect_worker(self._worker)
        else:
            lock_wait = WORKER_LOCK_WAIT if self.options.role == "durable" else 0.0
            self._store = Store(self.options.state_dir.resolve(), self.hub_name, lock_wait)
            if self.options.role == "durable":
                self._quiet = QuietGate.open(self.options.state_dir.resolve())
            self._engine = DurableEngine(
                self._store, self.index, self._executor, self._script_root, self.latency, quiet=self._quiet
            )
        self._configure_durable_api()
        await self._serve()
        if durable:
            await self.start_durable()

    async def start_durable(self) -> None:
        """Start the durable back end's dispatching and the timer triggers (once; nothing to do in the "http" role)."""
        if self._engine is not None and self._store is not None and self._timers is None:
            await self._engine.start()
            self._timers = TimerRunner(self.index.timers, self._store, self._invoke_timer)
            self._timers.start()

    async def pause_durable(self) -> None:
        """Stop the timer triggers and the durable back end's dispatching until `start_durable()` (tests use it)."""
        if self._timers is not None:
            await self._timers.stop()
            self._timers = None
        if self._engine is not None:
            await self._engine.pause()

    async def stop(self) -> None:
        """Stop timers, the server and the durable back end (or its worker process); close the store."""
        try:
            if self._timers is not None:
                await self._timers.stop()
            if self._mcp is not None:
                await self._mcp.close()  # SSE streams end, so the server's shutdown does not wait for them
            if self._runner is not None:
                await self._runner.cleanup()  # in-flight requests finish first: they may call the worker
        finally:
            if self._socket is not None:
                self._socket.close()
            await self._stop_back_end()

    def _load_settings(self) -> None:
        """local.settings.json, host.json, the queue latency and the keys (created here, before a worker reads them)."""
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
        self.easy_auth = easy_auth_enabled(options.easy_auth)
        if options.enable_auth:
            self.keys = load_keys(options.state_dir.resolve())

    def _bind(self) -> None:
        """Bind the listening socket: the public address, or (the durable worker) a free loopback port."""
        durable = self.options.role == "durable"
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket = sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, 0) if durable else (self.options.host, self.options.port))
        bound = int(sock.getsockname()[1])
        self.durable_port = bound
        if not durable:
            self.port = bound

    def _spawn_worker(self) -> None:
        """Start the durable worker with these options, the public port resolved."""
        worker_options = dataclasses.replace(
            self.options,
            role="durable",
            port=self.port,
            script_root=self._script_root,
            state_dir=self.options.state_dir.resolve(),
        )
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            level = "INFO"
        self._worker = DurableWorker.spawn(worker_options.to_json(), level)

    async def _connect_worker(self, worker: DurableWorker) -> None:
        """Wait for the worker to serve; then its port is the SDK's `rpcBaseUrl` and the proxy's upstream."""
        ready = await worker.ready()
        self.durable_port = ready.port
        self._rpc_path = ready.rpc_path
        self._proxy = ReverseProxy(f"http://{LOOPBACK}:{ready.port}")
        await self._proxy.start()

    async def _serve(self) -> None:
        assert self._socket is not None
        web_app = web.Application(client_max_size=MAX_REQUEST_BODY)
        web_app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(web_app, access_log=None, handle_signals=False, shutdown_timeout=5.0)
        await self._runner.setup()
        await web.SockSite(self._runner, self._socket).start()

    async def _stop_back_end(self) -> None:
        if self._engine is not None:
            await self._engine.stop()
        if self._worker is not None:
            await self._worker.stop()
        if self._proxy is not None:
            await self._proxy.close()
        # A private name because the SDK leaves no public way: the durable client's calls share one module-level
        # aiohttp session, made on the loop of the first call and closed only by http_utils._close_session
        # (azure/durable_functions/models/utils/http_utils.py, whose docstring says no shutdown hook calls it).
        # Left open, it warns at exit and a later host in the same process reuses it on a closed loop.
        # tests/unit/test_sdk_private_names.py fails when that changes.
        try:
            from azure.durable_functions.models.utils import http_utils

            await http_utils._close_session()
        except Exception:  # the SDK's private helper may change; closing is best effort
            logger.debug("could not close the SDK's client session", exc_info=True)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._store is not None:
            self._store.close()
        if self._board is not None:
            self._board.close()
        if self._quiet is not None:
            self._quiet.close()

    # ------------------------------------------------------------------ URLs and banner

    @property
    def base_url(self) -> str:
        """`http://localhost:<port>`."""
        return f"http://{self.options.public_hostname}:{self.port}"

    @property
    def engine(self) -> DurableEngine | None:
        """The durable back end when it runs in this process (roles "single" and "durable"), else None."""
        return self._engine

    @property
    def client_binding(self) -> str:
        """The durable-client binding JSON string every client function receives."""
        return self._client_binding

    @property
    def rpc_path(self) -> str:
        """The private path of the SDK's client calls with `--enable-auth` ("" without)."""
        return self._rpc_path

    @property
    def worker_pid(self) -> int | None:
        """The durable worker's process id (role "http"), else None."""
        return self._worker.pid if self._worker is not None else None

    @property
    def worker_exit(self) -> asyncio.Future[int] | None:
        """Resolves to the durable worker's exit code when it exits (role "http"), else None."""
        return self._worker.exited if self._worker is not None else None

    def function_url(self, route: str) -> str:
        """The public URL of an HTTP route."""
        prefix = f"/{self.route_prefix}" if self.route_prefix else ""
        return f"{self.base_url}{prefix}/{route}"

    def banner(self) -> str:
        """The start-up listing: the functions with their URLs, the processes, then the keys when auth is on."""
        lines = ["", "Functions:", ""]
        for function in self.index.http:
            methods = ",".join(function.methods) if function.methods != ALL_METHODS else "GET,POST,PUT,PATCH,DELETE"
            lines.append(f"  {function.name}: [{methods}] {self.function_url(function.route)}")
        tools = {t.name: t.tool_name for t in self.index.mcp_tools}
        for name, trigger_type in self.index.listing():
            if trigger_type != "httpTrigger":
                lines.append(f"  {name}: {trigger_type}" + (f" (tool {tools[name]})" if name in tools else ""))
        lines.append("")
        lines.append(f"Durable task hub '{self.hub_name}': {self.base_url}{DURABLE_PATH}/")
        if self._mcp is not None:
            lines.append(
                f"MCP server: {self.base_url}{MCP_PATH} (streamable HTTP), {self.base_url}{MCP_PATH}/sse (SSE)"
            )
        lines.append(self.latency.describe())
        lines.append(self._processes_line())
        if self.easy_auth:
            lines.append(easyauth.describe())
        if self.keys is not None:
            lines.append("Function keys are required (--enable-auth):")
            lines.append(f"  master key: {self.keys.master}")
            for name, key in self.keys.function_keys.items():
                lines.append(f"  function key '{name}': {key}")
            if self._mcp is not None and not self._mcp.options.anonymous:
                lines.append(f"  MCP extension system key 'mcp_extension': {self.keys.system['mcp_extension']}")
        else:
            lines.append("Function keys are not checked (run with --enable-auth to check them).")
        return "\n".join(lines) + "\n\n"

    def _processes_line(self) -> str:
        if self._worker is not None:
            return (
                f"HTTP triggers run in this process (pid {os.getpid()}); orchestrations, activities, entities and "
                f"timer triggers in the durable worker (pid {self._worker.pid}), as on Azure's Flex Consumption "
                "plan (--single-process: one process)."
            )
        return f"Every function runs in this one process (pid {os.getpid()}, --single-process)."

    def _compile(self, function: HttpFunction) -> Route:
        template = f"{self.route_prefix}/{function.route}" if self.route_prefix else function.route
        return compile_route(template, function)

    def _configure_durable_api(self) -> None:
        """The Durable HTTP API (where the engine is) and the durable-client binding."""
        public_base = f"{self.base_url}{DURABLE_PATH}"
        query = f"taskHub={self.hub_name}&connection=Storage"
        required = ""
        if self.keys is not None:
            required = f"code={self.keys.durable_key}"
            query += f"&{required}"
            if not self._rpc_path:
                # The SDK posts to rpcBaseUrl + path and cannot add a key: give it a private path instead.
                self._rpc_path = f"{RPC_PREFIX}{secrets.token_urlsafe(16)}"
        rpc_base = f"http://{LOOPBACK}:{self.durable_port}{self._rpc_path or DURABLE_PATH}/"
        if self._engine is not None:
            internal = self.durable_port if self.durable_port != self.port else None
            self._api = DurableHttpApi(
                self._engine, self.hub_name, public_base, query, internal_port=internal, public_port=self.port
            )
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
                "managementUrls": management_urls(public_base, query, "INSTANCEID"),
                "baseUrl": public_base,
                "requiredQueryStringParameters": required,
                "rpcBaseUrl": rpc_base,
                "httpBaseUrl": "",
                "maxGrpcMessageSizeInBytes": 0,
                "grpcHttpClientTimeout": "00:01:40",
            }
        )

    # ------------------------------------------------------------------ requests

    def _is_rpc(self, path: str) -> bool:
        return bool(self._rpc_path) and (path == self._rpc_path or path.startswith(self._rpc_path + "/"))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if self._is_rpc(path) or path == DURABLE_PATH or path.startswith(DURABLE_PATH + "/"):
            return await self._durable_request(request, path)
        if self.options.role == "durable":  # the worker serves the Durable HTTP API only
            return error_response(404, "NotFound", f"No Durable HTTP API route matches {request.method} {path}")
        if self._mcp is not None and is_mcp_path(path):
            return await self._mcp.handle(request)
        if path.rstrip("/") == "/admin/host/status":
            if self.keys is not None and not authorized(self.keys, "admin", request):
                return _unauthorized("admin")
            return web.json_response({"state": "Running", "processUptime": 0, "devhost": True})
        try:
            trigger_path = decode_path(request.raw_path)
        except RequestPathError as exc:
            return error_response(400, "BadRequest", str(exc))
        if self._board is None:
            return await self._http_trigger(request, trigger_path)
        self._board.started()  # HTTP triggers only: an MCP event stream stays open for as long as its client likes
        try:
            return await self._http_trigger(request, trigger_path)
        finally:
            self._board.ended()

    async def _durable_request(self, request: web.Request, path: str) -> web.StreamResponse:
        """The Durable HTTP API: forwarded to the durable worker, or answered here."""
        if self._proxy is not None:
            return await self._proxy.forward(request)  # the worker checks the keys
        assert self._api is not None
        if self._is_rpc(path):
            return await self._api.handle(request, path[len(self._rpc_path) :])
        if self.keys is not None and not authorized_system(self.keys, request):
            return _unauthorized("system")
        return await self._api.handle(request, path[len(DURABLE_PATH) :])

    async def _http_trigger(self, request: web.Request, path: str) -> web.StreamResponse:
        """Route ``path`` (decoded as the Functions host decodes it: ``devhost.routing.decode_path``) to a function.

        With ``--easy-auth`` the App Service Authentication stand-in comes first, as App Service Authentication sees a
        request before the Functions host does (``devhost.easyauth``).
        """
        principal: str | None = None
        if self.easy_auth:
            try:
                principal = principal_of(request.headers)
            except UnknownTokenError as exc:
                return error_response(401, "Unauthorized", str(exc))
        not_found = f"No function matches {request.method} {path}"
        if self.route_prefix:
            prefix = "/" + self.route_prefix.lower()
            lowered = path.lower()
            if lowered != prefix and not lowered.startswith(prefix + "/"):
                return error_response(404, "NotFound", not_found)
        matches = self._router.match(path)
        if not matches:
            return error_response(404, "NotFound", not_found)
        for route, values in matches:
            function: HttpFunction = route.target
            if request.method in function.methods:
                if self.keys is not None and not authorized(self.keys, function.auth_level, request, function.name):
                    return _unauthorized(function.auth_level)
                return await self._invoke_http(function, request, values, principal)
        allowed = ", ".join(sorted({m for route, _ in matches for m in route.target.methods}))
        detail = f"{request.method} is not allowed on {path}; allowed: {allowed}"
        return error_response(405, "MethodNotAllowed", detail, {"Allow": allowed})

    async def _invoke_http(
        self, function: HttpFunction, request: web.Request, route_values: dict[str, str], principal: str | None = None
    ) -> web.StreamResponse:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, "PayloadTooLarge", f"The body must be at most {MAX_REQUEST_BODY} bytes")
        headers: dict[str, str] = {}
        for key, value in request.headers.items():
            lowered = key.lower()
            headers[lowered] = f"{headers[lowered]}, {value}" if lowered in headers else value
        if self.easy_auth:
            headers = app_headers(headers, principal)
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
                return error_response(500, "InternalError", "The function failed; see the host's log")

    def _mcp_endpoint(self) -> McpEndpoint:
        """The MCP extension's endpoints over the app's tool triggers (devhost.mcp, devhost.mcp_http)."""
        options = McpOptions.from_host_json(self._script_root)
        server = McpServer(self.index.mcp_tools, self._invoke_mcp, options)
        states = ClientStates(self.options.state_dir.resolve())
        return McpEndpoint(server, states, options, self.keys, self.easy_auth)

    async def _invoke_mcp(self, tool: McpToolFunction, context: str) -> Any:
        """Run an MCP tool trigger with the invocation context JSON; its return value, or what it raised."""
        with invocation(tool.name, MCP_REASON) as outcome:
            kwargs: dict[str, Any] = {tool.trigger_name: context}
            if tool.client_binding:
                kwargs[tool.client_binding] = self._client_binding
            if "context" in tool.parameters and "context" not in kwargs:
                kwargs["context"] = InvocationContext(outcome.invocation_id, tool.name, self._script_root)
            try:
                return await self._call(tool.fn, tool.is_async, kwargs)
            except Exception:
                outcome.failed = True
                raise

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


_KEY_NEEDED = {
    "function": "a function key or the master key",
    "admin": "the master key",
    "system": "the Durable extension's system key or the master key",
}


def _unauthorized(level: str) -> web.Response:
    needed = _KEY_NEEDED.get(level, "a key")
    detail = f"This route needs {needed}, in the code query parameter or the x-functions-key header"
    return error_response(401, "Unauthorized", detail)


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
