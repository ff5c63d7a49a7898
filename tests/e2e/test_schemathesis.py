"""The OpenAPI document is the contract: Schemathesis tests the running service against ``/openapi.json``.

Every check (``--checks all``), every phase, a bounded and derandomized run (``--generation-deterministic``: the same
requests every time), against the service as ``make run`` serves it: once with keys off (as ``func start``) and once
with keys on (``--enable-auth``, the function key on memory routes and the master key on ``/stats`` and the user
routes). With keys off the ``ignored_auth`` check is left out: it asserts that a route refuses requests without a key,
which the local host does only with keys on. Zero failures; the figures of each run are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support.service import MemoryServiceProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HERE = Path(__file__).parent
CONFIG = HERE / "schemathesis.toml"
MAX_EXAMPLES = 170  # per operation and phase: over 2,500 requests per run
KEYS = {"master": "schemathesis-master-key", "function": "schemathesis-function-key"}


def schemathesis() -> str:
    found = Path(sys.executable).parent / "schemathesis"
    return str(found) if found.exists() else "schemathesis"


def keyed_config(tmp_path: Path) -> Path:
    """The shared settings plus the keys: the function key everywhere, the master key on the admin routes."""
    path = tmp_path / "schemathesis-keys.toml"
    path.write_text(
        f'headers = {{ "x-functions-key" = "{KEYS["function"]}" }}\n\n'
        + CONFIG.read_text(encoding="utf-8")
        + '\n[[operations]]\ninclude-path-regex = "^/(stats|users)"\n'
        + f'headers = {{ "x-functions-key" = "{KEYS["master"]}" }}\n',
        encoding="utf-8",
    )
    return path


def figures(report: Path) -> dict[str, object]:
    """Requests, statuses and check outcomes from the NDJSON report."""
    requests, statuses, checks = 0, Counter[int](), Counter[str]()
    for line in report.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        for interaction in (recorder.get("interactions") or {}).values():
            requests += 1
            if interaction.get("response"):
                statuses[interaction["response"]["status_code"]] += 1
        for outcomes in (recorder.get("checks") or {}).values():
            for outcome in outcomes:
                checks[outcome["status"]] += 1
    return {"requests": requests, "statuses": dict(sorted(statuses.items())), "checks": dict(checks)}


@pytest.mark.parametrize("keys", [False, True], ids=["keys-off", "keys-on"])
def test_the_service_keeps_its_openapi_contract(tmp_path: Path, keys: bool) -> None:
    report = tmp_path / "schemathesis.ndjson"
    with MemoryServiceProcess(tmp_path / "service", keys=KEYS if keys else None) as service:
        command = [
            schemathesis(),
            "--config-file",
            str(keyed_config(tmp_path) if keys else CONFIG),
            "run",
            f"{service.base_url}/openapi.json",
            "--checks",
            "all",
            *([] if keys else ["--exclude-checks", "ignored_auth"]),
            "--max-examples",
            str(MAX_EXAMPLES),
            "--generation-deterministic",
            "--workers",
            "1",
            "--no-color",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
        ]
        began = time.monotonic()
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        elapsed = time.monotonic() - began
    found = figures(report)
    print(f"\nschemathesis, keys {'on' if keys else 'off'}: {found} in {elapsed:.1f} s")  # noqa: T201
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert "0 failures" in result.stdout or " failures" not in result.stdout, result.stdout[-8000:]
    assert found["checks"].get("failure", 0) == 0, found  # type: ignore[union-attr]
    assert found["requests"] >= 2_500, found  # type: ignore[operator]
