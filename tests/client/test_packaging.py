"""Agent Framework is optional: ``import memory_client`` works without it; the provider says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import memory_client

ROOT = Path(__file__).resolve().parents[2]

# Run with agent_framework made unimportable (as if it were not installed).
WITHOUT_AGENT_FRAMEWORK = """
import sys
sys.modules["agent_framework"] = None  # import agent_framework -> ImportError
import memory_client
client = memory_client.MemoryServiceClient("http://localhost:7071", "u1")
assert "agent_framework" not in [m for m in sys.modules if sys.modules[m] is not None]
for attempt in ("from memory_client import CosmosMemoryProvider", "import memory_client.cosmos_memory_provider"):
    try:
        exec(attempt)
    except ImportError as error:
        print("ImportError:", error)
    else:
        raise SystemExit(attempt + " did not fail")
"""


def test_import_without_agent_framework() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_AGENT_FRAMEWORK], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert "needs Microsoft Agent Framework" in line
        assert "pip install './memory_client[agent-framework]'" in line


def test_package_is_typed_and_exports_its_api() -> None:
    package = Path(memory_client.__file__).parent
    assert (package / "py.typed").exists()
    assert set(memory_client.__all__) <= set(dir(memory_client)) | {"CosmosMemoryProvider"}
    assert memory_client.CosmosMemoryProvider.__name__ == "CosmosMemoryProvider"
    pyproject = (package / "pyproject.toml").read_text()
    assert 'dependencies = ["httpx>=0.27,<1"]' in pyproject
    assert 'agent-framework = ["agent-framework-core>=1.23,<2"]' in pyproject
