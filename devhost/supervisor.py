"""The durable worker process as its host sees it: start it, wait until it is ready, stop it; and the two pipes.

`python -m devhost` runs as two processes, as Azure's Flex Consumption plan runs the `http` and `durable` groups of
an app on different instances: the host serves the HTTP triggers on the public port, and the durable worker
(`python -m devhost.worker`, `devhost.worker`) runs the Durable back end, the timer triggers and the Durable HTTP API
on an internal loopback port. They share two pipes:

* the *ready* pipe (worker to host): the worker writes one JSON line once it serves, `{"port": ..., "rpc_path": ...,
  "pid": ...}`, or `{"error": "..."}` when it cannot start; end of file without a line means it died first;
* the *lifeline* (host to worker): the host holds the write end open and never writes. When the host dies, however
  it dies (`kill -9` included), the worker reads end of file and exits at once, without shutting down, as a crash
  (`watch_lifeline`); nothing it committed is lost and whatever was in flight runs again on the next start.

A graceful stop is the host's: SIGTERM to the worker, which then stops as a single-process host does, and a wait
(`DurableWorker.stop`). The worker ignores SIGINT, so Ctrl+C in a terminal (sent to the whole process group) stops
the host, which then stops the worker in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

STOP_TIMEOUT = 20.0  # seconds a graceful stop of the worker may take before it is killed
ORPHANED_EXIT_CODE = 70  # the worker's exit code when its host is gone

_PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent)


class WorkerStartError(RuntimeError):
    """The durable worker could not start; the message is its error."""


@dataclass(frozen=True)
class WorkerReady:
    """What the worker reports once it serves.

    Attributes:
        port: the internal loopback port of its Durable HTTP API.
        rpc_path: the private path of the SDK's client calls with `--enable-auth` ("" without).
        pid: its process id.
    """

    port: int
    rpc_path: str
    pid: int


class DurableWorker:
    """A running durable worker process, owned by the host that started it (`spawn`).

    Attributes:
        pid: the worker's process id.
        exited: resolves to the worker's exit code when it exits, for whatever reason.
    """

    def __init__(self, process: subprocess.Popen[bytes], ready_fd: int, lifeline_fd: int) -> None:
        self._process = process
        self._ready_fd: int | None = ready_fd
        self._lifeline_fd: int | None = lifeline_fd
        self.pid = process.pid
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[int] = loop.create_future()
        threading.Thread(target=self._wait, args=(loop,), name="devhost-worker-wait", daemon=True).start()

    @classmethod
    def spawn(cls, options_json: str, log_level: str) -> DurableWorker:
        """Start `python -m devhost.worker` with the host's options (JSON), environment, folder and output.

        Args:
            options_json: `HostOptions.to_json()` of the worker (role "durable").
            log_level: the root logger's level name, so both processes log alike.
        """
        ready_read, ready_write = os.pipe()
        lifeline_read, lifeline_write = os.pipe()
        command = [
            sys.executable,
            "-m",
            "devhost.worker",
            "--ready-fd",
            str(ready_write),
            "--lifeline-fd",
            str(lifeline_read),
            "--log-level",
            log_level,
            "--options",
            options_json,
        ]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_PARENT, env.get("PYTHONPATH", "")) if p)
        try:
            process = subprocess.Popen(
                command, pass_fds=(ready_write, lifeline_read), env=env, stdin=subprocess.DEVNULL
            )
        except BaseException:
            os.close(ready_read)
            os.close(lifeline_write)
            raise
        finally:
            os.close(ready_write)  # the worker's ends: only the worker holds them from now on
            os.close(lifeline_read)
        return cls(process, ready_read, lifeline_write)

    def _wait(self, loop: asyncio.AbstractEventLoop) -> None:
        code = self._process.wait()
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve, self.exited, code)

    async def ready(self) -> WorkerReady:
        """Wait for the worker's report.

        Raises:
            WorkerStartError: the worker could not start (its error), or exited before it reported.
        """
        assert self._ready_fd is not None, "ready() is called once"
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        pipe = os.fdopen(self._ready_fd, "rb", buffering=0)
        self._ready_fd = None
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
        try:
            line = await reader.readline()
        finally:
            transport.close()
        if not line.strip():
            code = await self.exited
            raise WorkerStartError(f"the durable worker exited with code {code} before it was ready (see above)")
        report: dict[str, Any] = json.loads(line)
        if "error" in report:
            raise WorkerStartError(str(report["error"]))
        return WorkerReady(port=int(report["port"]), rpc_path=str(report["rpc_path"]), pid=int(report["pid"]))

    async def stop(self, grace_seconds: float = STOP_TIMEOUT) -> None:
        """Stop the worker gracefully (SIGTERM, then SIGKILL after `grace_seconds`) and wait for it."""
        if not self.exited.done():
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(self.exited), grace_seconds)
            except TimeoutError:
                logger.warning(
                    "The durable worker (pid %d) did not stop within %gs: killing it", self.pid, grace_seconds
                )
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
                await self.exited
        self.close()

    def close(self) -> None:
        """Let go of the pipes (closing the lifeline makes a worker still running exit at once)."""
        for fd in (self._ready_fd, self._lifeline_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._ready_fd = self._lifeline_fd = None


def _resolve(future: asyncio.Future[int], code: int) -> None:
    if not future.done():
        future.set_result(code)


# ---------------------------------------------------------------------- the worker's side


def watch_lifeline(fd: int) -> None:
    """Exit the process at once (no clean-up, as a crash) when the host's end of the lifeline closes."""
    os.set_inheritable(fd, False)

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 512):
                pass  # the host never writes: only end of file matters
        os._exit(ORPHANED_EXIT_CODE)

    threading.Thread(target=watch, name="devhost-lifeline", daemon=True).start()


def report(fd: int, message: dict[str, Any]) -> None:
    """Write the worker's one report to the ready pipe and close it."""
    with contextlib.suppress(OSError), os.fdopen(fd, "wb", buffering=0) as pipe:
        pipe.write(json.dumps(message).encode() + b"\n")
