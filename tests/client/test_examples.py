"""The examples run against a started service as a newcomer runs them: as processes, checked by exit code and output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import unique
from tests.support.service import MemoryServiceProcess

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}, check=False
    )


def test_demo1_remote_walks_through_the_guide(service: MemoryServiceProcess) -> None:
    user = unique("demo")
    done = run(sys.executable, str(EXAMPLES / "demo1_remote.py"), "--url", service.base_url, "--user", user)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for line in (
        f"0. Memory service at {service.base_url}",
        "Status: healthy",
        f"User: {user}",
        "1. Start a session",
        "> No memory about this user yet.",
        "2. Store 16 turns",
        "3. Context after the turns",
        "Turns in session: 16",
        "> User: How do I rebalance my portfolio?",
        "4. Retrieve: 'What did we discuss about retirement?'",
        "  - User: I want to retire at 60.",
        "5. End the session and wait for reflection",
        "Reflection: Completed",
        "Summary:",
        "  - The user's name is Dana Whitfield.",
        "  - The user is allergic to peanuts.",
        "6. A new session remembers",
        "What the user has told us about themselves:",
        "Done: every step worked",
    ):
        assert line in out, f"{line!r} missing from:\n{out}"
    assert "Insights (11 added, 0 updated, 0 duplicates):" in out


def test_demo1_remote_says_clearly_when_the_service_is_not_running(closed_url: str) -> None:
    done = run(sys.executable, str(EXAMPLES / "demo1_remote.py"), env={"MEMORY_SERVICE_URL": closed_url})
    assert done.returncode == 2
    assert f"ERROR: the memory service at {closed_url} is not available" in done.stderr
    assert "make run" in done.stderr
    assert "Traceback" not in done.stderr


def test_agent_framework_demo_remembers_across_sessions(service: MemoryServiceProcess) -> None:
    done = run(sys.executable, str(EXAMPLES / "agent_framework_demo.py"), "--url", service.base_url)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for line in (
        "Agent: Your name is Dana. (I remember it.)",
        "System instructions: 'You are a helpful assistant.'",
        '<memory_context source="agent-memory-service">',
        "Reflection: Completed",
        "Session 2: a new session, the same user",
        "Agent: You live in Portland. (I remember it.)",
        "Agent: You are a pediatric nurse. (I remember it.)",
    ):
        assert line in out, f"{line!r} missing from:\n{out}"


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("python3")), reason="needs curl and python3")
def test_curl_script_runs_pattern_3(service: MemoryServiceProcess, closed_url: str) -> None:
    done = run("bash", str(EXAMPLES / "curl.sh"), service.base_url, unique("curl"))
    assert done.returncode == 0, done.stdout + done.stderr
    for line in ("== 1. start a session", "== 3. the context", "> User: What is a 401k?", "runtimeStatus: Completed"):
        assert line in done.stdout, f"{line!r} missing from:\n{done.stdout}"
    # the base URL from MEMORY_SERVICE_URL; set -e stops at the first failure
    down = run("bash", str(EXAMPLES / "curl.sh"), env={"MEMORY_SERVICE_URL": closed_url})
    assert down.returncode != 0
