"""Background work that waits for a quiet moment of the HTTP host, as if it ran on machines of its own.

On Azure's Flex Consumption plan the `durable` group (orchestrations, entities, activities) runs on instances of its
own, so background work never takes a CPU from request handling. On a developer's machine both processes share a
few cores, and lowering the worker's priority (`devhost.worker.WORKER_NICENESS`) only decides who runs first once
both want a core: a model run the worker already started still takes one while the host answers. So the host keeps
a board in its state directory (`BOARD_FILE`, 16 bytes in shared memory): how many HTTP trigger requests it is
serving, and when the last one ended. Before an orchestration episode or an activity starts, the worker waits until
no request has been in flight for `QUIET_SECONDS`; under sustained load one waiting piece goes ahead every
`MAX_DEFER_SECONDS`, so background work goes on, only more slowly, and never starts in a burst. Requests never
wait on the worker for this: no request waits on Durable work.

Only the two-process host uses it (the default of `run_server.py`); `--single-process` runs everything at once.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import struct
import time
from collections import deque
from pathlib import Path

BOARD_FILE = "http-requests.board"
QUIET_SECONDS = 0.005  # no request in flight for this long: the host is between requests, not in a burst of them
MAX_DEFER_SECONDS = 0.5  # under sustained load, one waiting piece of background work goes ahead this often
POLL_SECONDS = 0.002  # how often one watcher reads the board while work waits
_LAYOUT = struct.Struct("<qd")  # requests in flight; time.monotonic() of the last start or end (a system-wide clock)


class RequestBoard:
    """The host's side: counts its HTTP trigger requests on the board (the event loop's thread only)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = state_dir / BOARD_FILE
        # Never truncated below its size: a worker of a host that was killed may still have it mapped while it exits,
        # and reading a mapping past the end of its file is a SIGBUS.
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, _LAYOUT.size)
            self._map = mmap.mmap(fd, _LAYOUT.size)
        finally:
            os.close(fd)
        self._in_flight = 0
        self._write(0.0)

    def started(self) -> None:
        """A request came in."""
        self._in_flight += 1
        self._write(time.monotonic())

    def ended(self) -> None:
        """A request was answered."""
        self._in_flight = max(0, self._in_flight - 1)
        self._write(time.monotonic())

    def close(self) -> None:
        """Release the shared memory."""
        self._map.close()

    def _write(self, now: float) -> None:
        _LAYOUT.pack_into(self._map, 0, self._in_flight, now)


class QuietGate:
    """The worker's side: waits for a quiet moment of the host (see the module docstring).

    Args:
        path: the board file.
        quiet_seconds: how long no request must have been in flight.
        max_defer_seconds: under sustained load, one waiting ``wait()`` returns this often.
    """

    def __init__(
        self, path: Path, quiet_seconds: float = QUIET_SECONDS, max_defer_seconds: float = MAX_DEFER_SECONDS
    ) -> None:
        with open(path, "rb") as file:
            self._map = mmap.mmap(file.fileno(), _LAYOUT.size, access=mmap.ACCESS_READ)
        self.quiet_seconds = quiet_seconds
        self.max_defer_seconds = max_defer_seconds
        self._waiting: deque[asyncio.Future[None]] = deque()  # in the order they came
        self._watcher: asyncio.Task[None] | None = None

    @classmethod
    def open(cls, state_dir: Path) -> QuietGate | None:
        """The gate on the host's board in ``state_dir``, or None when there is none (a single-process host)."""
        path = state_dir / BOARD_FILE
        return cls(path) if path.is_file() else None

    def read(self) -> tuple[int, float]:
        """The board: requests in flight, and the ``time.monotonic()`` of the last one's start or end."""
        in_flight, last_change = _LAYOUT.unpack_from(self._map, 0)
        return int(in_flight), float(last_change)

    def busy(self) -> bool:
        """Whether the host is serving a request or answered one less than ``quiet_seconds`` ago."""
        in_flight, last_change = self.read()
        return in_flight > 0 or time.monotonic() - last_change < self.quiet_seconds

    async def wait(self) -> None:
        """Return once the host is quiet; under sustained load, in turn with other waiting work.

        While the host stays busy, one piece of waiting work goes ahead every ``max_defer_seconds`` (the longest
        waiting first), so that background work goes on under load without starting in bursts; once the host is
        quiet, every piece goes. One watcher reads the board every ``POLL_SECONDS`` while work waits: the board is
        another process's memory, and nothing wakes this one when it changes.
        """
        if not self._waiting and not self.busy():
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(), name="devhost-quiet-watch")
        try:
            await turn
        finally:
            if turn in self._waiting:
                self._waiting.remove(turn)  # cancelled while waiting

    async def _watch(self) -> None:
        let_through = time.monotonic()
        while self._waiting:
            if not self.busy():
                going, self._waiting = self._waiting, deque()
                for turn in going:
                    if not turn.done():
                        turn.set_result(None)
                return
            if time.monotonic() - let_through >= self.max_defer_seconds:
                turn = self._waiting.popleft()
                if not turn.done():
                    turn.set_result(None)
                let_through = time.monotonic()
            await asyncio.sleep(POLL_SECONDS)

    def close(self) -> None:
        """Stop the watcher and release the shared memory."""
        if self._watcher is not None:
            self._watcher.cancel()
        self._map.close()
