"""run_server.py's own options: its help, the SQLite path flag, --trace; the rest goes to the local host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import run_server

ROOT = Path(__file__).resolve().parents[2]


def test_help_shows_its_own_options_then_the_local_hosts():
    done = subprocess.run(
        [sys.executable, "run_server.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    own, _, host = done.stdout.partition("Every other option is the local host's")
    assert own.startswith("usage: python run_server.py") and "--sqlite-path" in own and "--trace" in own
    assert "--durable-latency" in host and "--state-dir" in host
    assert "Starting Agent Memory Service" not in done.stdout  # no banner for --help


def test_sqlite_path_and_trace_become_settings_and_the_rest_goes_to_devhost(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    passed: list[list[str]] = []
    monkeypatch.setattr(run_server, "devhost_main", lambda argv: passed.append(argv) or 0)
    # main() sets process-wide defaults (EMBEDDINGS_PROVIDER, OTEL_TRACES_EXPORTER...): give it a copy of the
    # environment, so that nothing leaks into the tests after this one (a tracer provider would follow).
    environment = {k: v for k, v in os.environ.items() if k != "OTEL_TRACES_EXPORTER"}
    environment["SQLITE_PATH"] = "ignored"
    monkeypatch.setattr(os, "environ", environment)
    monkeypatch.chdir(tmp_path)
    argv = ["--no-local-settings", "--sqlite-path", "store.db", "--trace", "--port", "7999"]
    assert run_server.main(argv) == 0
    assert os.environ["SQLITE_PATH"] == str(tmp_path / "store.db")  # relative to where it was started
    assert os.environ["OTEL_TRACES_EXPORTER"] == "console"
    assert passed == [["--no-local-settings", "--port", "7999"]]
