"""What every invocation shares: the `func.Context` a function may declare, and `func start`'s log lines and format."""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import azure.functions as func

# A private module because the SDK leaves no public way: func.Context's abstract trace_context and retry_context
# return these ABCs, which azure.functions defines in azure/functions/_abc.py and does not re-export (its __init__.py
# exports Context, TimerRequest, InputStream and Out from there). tests/unit/test_sdk_private_names.py fails when
# that changes.
from azure.functions import _abc

logger = logging.getLogger("devhost.functions")


class _TraceContext(_abc.TraceContext):
    def __init__(self, trace_parent: str = "", trace_state: str = "") -> None:
        self._trace_parent = trace_parent
        self._trace_state = trace_state

    @property
    def trace_parent(self) -> str:
        return self._trace_parent

    @property
    def trace_state(self) -> str:
        return self._trace_state

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(_abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """The `context: func.Context` argument: invocation id, function name and directory."""

    _thread_local = threading.local()

    def __init__(
        self, invocation_id: str, function_name: str, function_directory: Path, trace_parent: str = ""
    ) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = str(function_directory)
        self._trace_context = _TraceContext(trace_parent)

    @property
    def invocation_id(self) -> str:
        """The invocation's id (a GUID)."""
        return self._invocation_id

    @property
    def function_name(self) -> str:
        """The function's name."""
        return self._function_name

    @property
    def function_directory(self) -> str:
        """The app's folder."""
        return self._function_directory

    @property
    def thread_local_storage(self) -> Any:
        """Thread-local storage shared by invocations."""
        return self._thread_local

    @property
    def trace_context(self) -> _abc.TraceContext:
        """An empty distributed-tracing context."""
        return self._trace_context

    @property
    def retry_context(self) -> _abc.RetryContext:
        """No retries: the first attempt."""
        return _RetryContext()


class Outcome:
    """Set `failed` inside `invocation()` when the function failed without raising (e.g. an orchestrator error)."""

    def __init__(self, invocation_id: str) -> None:
        self.invocation_id = invocation_id
        self.failed = False


@contextmanager
def invocation(function_name: str, reason: str, invocation_id: str | None = None) -> Iterator[Outcome]:
    """Log `Executing 'Functions.X' (...)` and `Executed 'Functions.X' (Succeeded|Failed, ..., Duration=Nms)`."""
    outcome = Outcome(invocation_id or str(uuid.uuid4()))
    logger.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", function_name, reason, outcome.invocation_id)
    started = time.perf_counter()
    try:
        yield outcome
    except BaseException:
        outcome.failed = True
        raise
    finally:
        duration = round((time.perf_counter() - started) * 1000)
        level = logging.ERROR if outcome.failed else logging.INFO
        logger.log(
            level,
            "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms)",
            function_name,
            "Failed" if outcome.failed else "Succeeded",
            outcome.invocation_id,
            duration,
        )


def configure_logging(level: str) -> None:
    """Log to stdout as `[2025-01-01T12:00:00.123Z] message`, like `func start` (the host and its durable worker)."""
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter("[%(asctime)s.%(msecs)03dZ] %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if level != "DEBUG":
        for noisy in ("aiohttp.access", "azure", "opentelemetry"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
