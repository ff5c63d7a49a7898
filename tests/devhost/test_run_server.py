"""run_server.py's own options: its help, the SQLite path flag, spans on the console; the rest goes to devhost."""

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
    assert own.startswith("usage: python run_server.py") and "--sqlite-path" in own and "--no-trace" in own
    assert "--durable-latency" in host and "--state-dir" in host
    assert "Starting Agent Memory Service" not in done.stdout  # no banner for --help


def run_main(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], **env: str) -> list[list[str]]:
    """run_server.main on a copy of the environment (it sets process-wide defaults: EMBEDDINGS_PROVIDER,
    OTEL_TRACES_EXPORTER...), so that nothing leaks into later tests (a tracer provider would follow); what it passed
    on to devhost."""
    passed: list[list[str]] = []
    monkeypatch.setattr(run_server, "devhost_main", lambda argv: passed.append(argv) or 0)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    monkeypatch.setattr(os, "environ", {**environment, **env})
    monkeypatch.chdir(tmp_path)
    assert run_server.main(argv) == 0
    return passed


def test_sqlite_path_becomes_the_setting_and_the_rest_goes_to_devhost(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    argv = ["--no-local-settings", "--sqlite-path", "store.db", "--port", "7999"]
    passed = run_main(monkeypatch, tmp_path, argv, SQLITE_PATH="ignored")
    assert os.environ["SQLITE_PATH"] == str(tmp_path / "store.db")  # relative to where it was started
    assert passed == [["--no-local-settings", "--port", "7999"]]


@pytest.mark.parametrize(
    ("argv", "env", "exporter"),
    [
        ([], {}, "console"),  # make run prints spans by default
        (["--no-trace"], {}, "none"),
        ([], {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318"}, None),  # OTLP instead of the console
    ],
)
def test_spans_go_to_the_console_unless_silenced_or_sent_to_otlp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, argv: list[str], env: dict[str, str], exporter: str | None
):
    run_main(monkeypatch, tmp_path, ["--no-local-settings", *argv], **env)
    assert os.environ.get("OTEL_TRACES_EXPORTER") == exporter
