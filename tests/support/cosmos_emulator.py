"""Start and stop the test-support Cosmos DB API server (``tests/support/cosmos_server.js``) for a test session."""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_SCRIPT = REPO_ROOT / "tests" / "support" / "cosmos_server.js"
PACKAGE_DIR = REPO_ROOT / "node_modules" / "@vercel" / "cosmosdb-server"
START_TIMEOUT_SECONDS = 15.0
# The Cosmos DB emulator's published well-known key. The test server checks no key; clients still need a base64 one.
COSMOS_EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
STOP_TIMEOUT_SECONDS = 5.0


class CosmosServerError(RuntimeError):
    """The Cosmos DB API server could not be started."""


class CosmosServer:
    """A running ``cosmos_server.js`` process; stop it with ``stop()`` or use it as a context manager."""

    def __init__(self, process: subprocess.Popen[str], host: str, port: int, stderr: IO[str]) -> None:
        self.process = process
        self.host = host
        self.port = port
        self._stderr = stderr

    @property
    def endpoint(self) -> str:
        """The account endpoint to give ``CosmosClient`` (plain http: endpoint discovery must be off)."""
        return f"http://{self.host}:{self.port}/"

    def stop(self) -> None:
        """Terminate the server, then kill it if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()

    def __enter__(self) -> CosmosServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _read_stderr(stderr: IO[str]) -> str:
    stderr.seek(0)
    return stderr.read().strip() or "(empty)"


def start_cosmos_server(host: str = "127.0.0.1", timeout: float = START_TIMEOUT_SECONDS) -> CosmosServer:
    """Start ``node tests/support/cosmos_server.js`` on a free loopback port and wait until it accepts connections."""
    if not (PACKAGE_DIR / "package.json").is_file():
        raise CosmosServerError(f"{PACKAGE_DIR} is missing: run `make install` (npm ci) in {REPO_ROOT}")
    node = shutil.which("node")
    if node is None:
        raise CosmosServerError("`node` (Node.js 20 or newer) is not on PATH; it runs the Cosmos DB API server")
    # stderr goes to a file rather than a pipe: nothing reads it while the server runs, and a full pipe would block it.
    stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # closed by CosmosServer.stop()
    process = subprocess.Popen(
        [node, str(SERVER_SCRIPT), "--host", host, "--port", "0"],
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env={**os.environ, "NODE_ENV": "test"},
    )
    server = CosmosServer(process, host, 0, stderr)
    try:
        server.port = _wait_until_listening(process, host, timeout)
    except CosmosServerError as exc:
        if process.poll() is None:
            process.kill()
        process.wait()
        detail = _read_stderr(stderr)
        server.stop()
        raise CosmosServerError(f"the Cosmos DB API server did not start: {exc}; its stderr: {detail}") from None
    return server


def _wait_until_listening(process: subprocess.Popen[str], host: str, timeout: float) -> int:
    """Read the server's ``listening HOST:PORT`` line, then check that the port accepts a connection."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline().strip() if ready else ""
    if not line and not ready:
        raise CosmosServerError(f"no answer within {timeout}s")
    if not line:  # end of stdout: the process is exiting
        try:
            raise CosmosServerError(f"it exited with code {process.wait(timeout=STOP_TIMEOUT_SECONDS)}")
        except subprocess.TimeoutExpired:
            raise CosmosServerError("it closed its stdout without a 'listening' line") from None
    if not line.startswith("listening ") or not line.rsplit(":", 1)[-1].isdigit():
        raise CosmosServerError(f"unexpected first line {line!r}")
    port = int(line.rsplit(":", 1)[1])
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise CosmosServerError(f"port {port} does not accept connections ({exc})") from None
    return port
