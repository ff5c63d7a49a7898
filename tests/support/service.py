"""Run the memory service (``run_server.py`` on the local host) as a child process, for end-to-end tests and benches.

The process is hermetic: it runs with ``--no-local-settings`` (a developer's ``local.settings.json`` is ignored),
and every setting of ``memory_core.config.Settings`` is taken out of the inherited environment, so only the
settings' defaults, this module's test defaults (``TEST_DEFAULTS``) and the caller's overrides apply. Its durable
state lives in ``<workdir>/devhost`` and its store in ``<workdir>/memory.sqlite3``; its output goes to
``<workdir>/service.log``. It listens on 127.0.0.1 only, on a port picked once and kept across restarts, so URLs
handed out before a crash (e.g. ``statusQueryGetUri``) still work after ``restart()``.

As a context manager::

    with MemoryServiceProcess(tmp_path, {"SESSION_TTL_MINUTES": "0.02"}) as service:
        httpx.get(f"{service.base_url}/health")
        service.kill()  # SIGKILL, as a crash
        service.start()  # again, on the same state dir, store and port

From a pytest fixture::

    @pytest.fixture(scope="module")
    def service(tmp_path_factory):
        with MemoryServiceProcess(tmp_path_factory.mktemp("service")) as running:
            yield running

Public API: ``MemoryServiceProcess`` (``start``, ``stop``, ``kill``, ``restart``, ``output``, ``running``,
``base_url``, ``url``, ``port``, ``workdir``, ``state_dir``, ``sqlite_path``, ``log_path``, ``env``, ``keys``,
``master_key``, ``function_key``, ``mcp_key``), ``free_port``,
``TEST_DEFAULTS`` and ``ServiceStartError``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from memory_core.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"

# What a test service runs with unless the caller says otherwise: the embedded store, the local chat model and
# full-text search only (the optional embedding model is not needed; pass EMBEDDINGS_PROVIDER=local to use it).
TEST_DEFAULTS: dict[str, str] = {
    "STORE": "sqlite",
    "LLM_PROVIDER": "local",
    "EMBEDDINGS_PROVIDER": "none",
    "LOG_LEVEL": "INFO",
    # the packaged model's int8 form, prepared once per machine for every test service (not in the user's cache)
    "LOCAL_MODEL_CACHE": str(Path(tempfile.gettempdir()) / "agent-memory-tests" / "models"),
}

# Variables of the inherited environment that would change the service: every setting, and what the host reads.
_HOST_VARIABLES = (
    "WEBSITE_TIME_ZONE",
    "DEVHOST_MASTER_KEY",
    "DEVHOST_FUNCTION_KEY",
    "DEVHOST_DURABLE_LATENCY_MS",
    "DEVHOST_DURABLE_JITTER_MS",
    "DEVHOST_DURABLE_SEED",
    "DEVHOST_EASY_AUTH",
)


class ServiceStartError(RuntimeError):
    """The service exited or did not answer ``GET /health`` in time; the message ends with its output."""


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _python() -> str:
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


class MemoryServiceProcess:
    """``python run_server.py --port PORT --state-dir WORKDIR/devhost --no-local-settings`` as a child process.

    Args:
        workdir: folder for the state dir, the SQLite store and the log (created if missing).
        settings: app settings (environment variables) on top of ``TEST_DEFAULTS``, e.g. ``{"K_TURN_BUFFER": "3"}``;
            ``SQLITE_PATH`` defaults to ``WORKDIR/memory.sqlite3``.
        port: the port to listen on (default: a free one, picked once).
        start_timeout: seconds to wait for ``GET /health`` to answer 200.
        stop_timeout: seconds ``stop()`` waits after SIGTERM before it sends SIGKILL.
        durable_latency_ms: deliver every Durable message this late, as Azure Storage's queues may (``python -m
            devhost --durable-latency``; the jitter is half of it); 0: at once.
        durable_seed: seed of that jitter, for reproducible runs.
        keys: check function keys, as on Azure (``--enable-auth``): ``{"master": ..., "function": ...}`` (either may
            be left out: devhost then makes one up in ``WORKDIR/devhost/keys.json``); None (the default) checks no
            key, as ``func start`` does. The keys in force are ``master_key`` and ``function_key``.
        easy_auth: put the local stand-in for App Service Authentication in front of the app (``--easy-auth``), which
            also makes ``CALLER_IDENTITY`` default to ``principal``: requests sign in with
            ``Authorization: Bearer devhost-principal:<id>``.
    """

    def __init__(
        self,
        workdir: Path | str,
        settings: Mapping[str, str] | None = None,
        *,
        port: int | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        durable_latency_ms: float = 0,
        durable_seed: int | None = None,
        keys: Mapping[str, str] | None = None,
        easy_auth: bool = False,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.state_dir = self.workdir / "devhost"
        self.log_path = self.workdir / "service.log"
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        values = {**TEST_DEFAULTS, "SQLITE_PATH": str(self.workdir / "memory.sqlite3"), **(settings or {})}
        self.sqlite_path = Path(values["SQLITE_PATH"])
        inherited = {k: v for k, v in os.environ.items() if k not in Settings.model_fields and k not in _HOST_VARIABLES}
        self.env: dict[str, str] = {**inherited, **values, "PYTHONUNBUFFERED": "1"}
        self.command = [
            _python(),
            "run_server.py",
            "--port",
            str(self.port),
            "--state-dir",
            str(self.state_dir),
            "--no-local-settings",
            "--durable-latency",
            f"{durable_latency_ms:g}",
        ]
        if durable_seed is not None:
            self.command += ["--durable-seed", str(durable_seed)]
        self.keys = dict(keys) if keys is not None else None
        if self.keys is not None:
            # devhost reads the keys from DEVHOST_MASTER_KEY / DEVHOST_FUNCTION_KEY, else from its state dir
            self.command.append("--enable-auth")
            for name, variable in (("master", "DEVHOST_MASTER_KEY"), ("function", "DEVHOST_FUNCTION_KEY")):
                if self.keys.get(name):
                    self.env[variable] = self.keys[name]
        if easy_auth:
            self.command.append("--easy-auth")
        self.easy_auth = easy_auth
        self.durable_latency_ms = durable_latency_ms
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- addresses ---------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the service's routes have no prefix (``/health``, ``/memory/store``...)."""
        return f"http://{HOST}:{self.port}"

    def url(self, address: str) -> str:
        """A URL the service handed out (``http://localhost:PORT/...``) pointed at 127.0.0.1, where it listens."""
        parts = urlsplit(address)
        return urlunsplit(parts._replace(netloc=f"{HOST}:{self.port}"))

    @property
    def master_key(self) -> str | None:
        """The master key in force with ``keys`` (admin routes and every other one), or None when keys are off."""
        return self._key("masterKey", "master")

    @property
    def function_key(self) -> str | None:
        """The default function key in force with ``keys``, or None when keys are off."""
        return self._key("functionKeys", "function")

    @property
    def mcp_key(self) -> str | None:
        """The MCP extension's system key (``mcp_extension``) with ``keys``, or None when keys are off."""
        if self.keys is None:
            return None
        stored = json.loads((self.state_dir / "keys.json").read_text(encoding="utf-8"))
        return str(stored["systemKeys"]["mcp_extension"])

    def _key(self, document_name: str, name: str) -> str | None:
        if self.keys is None:
            return None
        if self.keys.get(name):
            return self.keys[name]
        stored = json.loads((self.state_dir / "keys.json").read_text(encoding="utf-8"))[document_name]
        return str(stored["default"] if isinstance(stored, dict) else stored)

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id of the current (or last) run."""
        return self._process.pid if self._process is not None else None

    def start(self) -> MemoryServiceProcess:
        """Start the process and wait until ``GET /health`` answers 200; raise ``ServiceStartError`` if it does not."""
        if self.running:
            raise RuntimeError(f"The service is already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"\n==> {' '.join(self.command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                self.command,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_healthy()
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        problem = "no answer yet"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise ServiceStartError(
                    f"The service exited with {self._process.returncode} before it was healthy:\n{self.output()}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=5) as response:
                    if response.status == 200:
                        return
                    problem = f"GET /health answered {response.status}"
            except urllib.error.HTTPError as error:
                problem = f"GET /health answered {error.code}: {error.read()[:500]!r}"
            except (urllib.error.URLError, OSError) as error:
                problem = f"GET /health failed: {error}"
            time.sleep(0.05)
        raise ServiceStartError(
            f"The service was not healthy within {self.start_timeout}s ({problem}):\n{self.output()}"
        )

    def kill(self) -> None:
        """SIGKILL the process (a crash: nothing is flushed or shut down) and reap it. No-op if it is not running."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
        self._process.wait()

    def stop(self) -> int | None:
        """SIGTERM (graceful shutdown), then SIGKILL after ``stop_timeout``; the exit code (None if it never ran)."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._process.returncode

    def restart(self, *, crash: bool = True) -> MemoryServiceProcess:
        """Kill (``crash``, the default) or stop the process, then start it again on the same state, store and port."""
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start()

    def output(self, *, current_run_only: bool = True) -> str:
        """What the process printed (banner and logs): of the current run, or of every run since the log began."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            if current_run_only:
                log.seek(self._log_offset)
            return log.read().decode("utf-8", errors="replace")

    def __enter__(self) -> MemoryServiceProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<MemoryServiceProcess {self.base_url} {state} workdir={self.workdir}>"
