"""Fixtures for the devhost tests: an in-process host on a free loopback port, and helpers to run it as a process.

The in-process host lives for the whole test session on the session event loop, because the Durable SDK's client
keeps one module-global aiohttp session bound to the first loop that uses it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import azure.durable_functions as df
import pytest
import pytest_asyncio
from pytest_asyncio import is_async_test

from devhost import DevHost, HostOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE_DIR = Path(__file__).parent / "sample_app"
APP_MODULE = "tests.devhost.sample_app.function_app"
TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}
# a schedule that never fires during a test run
NEVER = "0 0 0 1 1 *"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every devhost test on the session loop (the in-process host and the SDK client live there)."""
    here = Path(__file__).parent
    marker = pytest.mark.asyncio(loop_scope="session")
    # the SDK warns once that df_loads ran without expected_type: that is the SDK's default path
    quiet = pytest.mark.filterwarnings("ignore:azure.functions df_loads was called without expected_type")
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(quiet)
            if is_async_test(item):
                item.add_marker(marker, append=False)


def make_script_root(path: Path, values: dict[str, str]) -> Path:
    """A folder with the sample app's host.json and a local.settings.json holding `values`."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLE_DIR / "host.json", path / "host.json")
    (path / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def host(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevHost]:
    root = make_script_root(
        tmp_path_factory.mktemp("devhost"), {"SAMPLE_HUB": "DevhostTests", "SAMPLE_SCHEDULE": NEVER}
    )
    # durable_latency_ms=0: deliver at once whatever DEVHOST_DURABLE_LATENCY_MS says (tests/devhost/test_latency.py
    # starts hosts with a latency)
    options = HostOptions(app=APP_MODULE, script_root=root, state_dir=root / "state", port=0, durable_latency_ms=0)
    running = DevHost(options)
    await running.start()
    yield running
    await running.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def http(host: DevHost) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=host.base_url) as session:
        yield session


@pytest.fixture(scope="session")
def client(host: DevHost) -> df.DurableOrchestrationClient:
    return df.DurableOrchestrationClient(host.client_binding)


async def wait_for(
    client: df.DurableOrchestrationClient, instance_id: str, statuses: set[str] = TERMINAL, within: float = 15.0
) -> Any:
    """Poll the status until it is one of `statuses`; returns the DurableOrchestrationStatus."""
    deadline = time.monotonic() + within
    while True:
        status = await client.get_status(instance_id, show_history=True, show_history_output=True)
        if status and status.runtime_status is not None and status.runtime_status.value in statuses:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"{instance_id} is {status.runtime_status if status else None} after {within}s")
        await asyncio.sleep(0.05)


async def eventually(check: Any, within: float = 10.0, interval: float = 0.05) -> Any:
    """Call `check()` (sync or async) until it returns a truthy value."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(interval)


class HostProcess:
    """`python -m devhost` as a child process, with its output in a file."""

    def __init__(self, script_root: Path, state_dir: Path, *extra: str) -> None:
        self.log_path = state_dir.parent / f"devhost-{state_dir.name}-{time.monotonic_ns()}.log"
        self._args = [
            sys.executable,
            "-m",
            "devhost",
            "--app",
            APP_MODULE,
            "--script-root",
            str(script_root),
            "--state-dir",
            str(state_dir),
            "--port",
            "0",
            *extra,
        ]
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def start(self, timeout: float = 20.0) -> HostProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SAMPLE_", "DEVHOST_DURABLE_"))}
        env["PYTHONPATH"] = str(REPO_ROOT)
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self._args, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"Host started: (http://\S+) ", self.output())
            if found:
                self.base_url = found.group(1)
                return self
            if self.process.poll() is not None:
                raise AssertionError(f"devhost exited with {self.process.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise AssertionError(f"devhost did not start within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def worker_pid(self) -> int | None:
        """The durable worker's pid, from the start-up listing (None with --single-process)."""
        found = re.search(r"in the durable worker \(pid (\d+)\)", self.output())
        return int(found.group(1)) if found else None

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def process_gone(pid: int) -> bool:
    """Whether a process has exited (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def parent_pid(pid: int) -> int:
    """The parent process id of a running process (/proc, else `ps`)."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    return int(subprocess.check_output(["ps", "-o", "ppid=", "-p", str(pid)], text=True).strip())


def child_pids(pid: int) -> list[int] | None:
    """The child processes of a process (Linux /proc; None elsewhere)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in children.read_text().split()] if children.exists() else None


@pytest.fixture
def host_processes() -> Iterator[list[HostProcess]]:
    """Collects the processes a test starts and makes sure none is left running."""
    started: list[HostProcess] = []
    yield started
    for process in started:
        if process.process is not None and process.process.poll() is None:
            process.kill()
