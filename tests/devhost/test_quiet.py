"""Background work waits for a quiet moment of the HTTP host (devhost.quiet)."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

from devhost.quiet import BOARD_FILE, QuietGate, RequestBoard


def gate_on(state_dir: Path, max_defer: float = 0.2) -> QuietGate:
    gate = QuietGate.open(state_dir)
    assert gate is not None
    gate.max_defer_seconds = max_defer
    return gate


async def test_work_waits_while_a_request_is_served_and_goes_on_once_the_host_is_quiet(tmp_path: Path):
    board, gate = RequestBoard(tmp_path), None
    try:
        gate = gate_on(tmp_path, max_defer=5.0)
        board.started()
        waiting = asyncio.create_task(gate.wait())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the host is answering a request
        board.ended()
        started = time.monotonic()
        await asyncio.wait_for(waiting, 1.0)
        assert gate.quiet_seconds <= time.monotonic() - started + 0.001  # a quiet moment, not just the end
    finally:
        board.close()
        if gate is not None:
            gate.close()


async def test_under_sustained_load_waiting_work_goes_ahead_one_piece_at_a_time(tmp_path: Path):
    board = RequestBoard(tmp_path)
    gate = gate_on(tmp_path, max_defer=0.05)
    released: list[tuple[int, float]] = []

    async def piece(number: int) -> None:
        await gate.wait()
        released.append((number, time.monotonic()))

    try:
        board.started()  # never ends
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(piece(n) for n in range(4))), 2.0)
        assert [number for number, _ in released] == [0, 1, 2, 3]  # the longest waiting first
        times = [started] + [at for _, at in released]
        assert all(later - earlier >= 0.045 for earlier, later in itertools.pairwise(times))  # no burst
    finally:
        board.close()
        gate.close()


async def test_a_quiet_host_lets_work_start_at_once_and_one_watcher_serves_every_waiter(tmp_path: Path):
    board = RequestBoard(tmp_path)
    gate = gate_on(tmp_path, max_defer=2.0)
    try:
        await asyncio.sleep(gate.quiet_seconds)
        assert not gate.busy()
        await asyncio.wait_for(gate.wait(), 0.05)
        assert gate._watcher is None  # nothing to watch: it did not wait
        board.started()
        waiters = [asyncio.create_task(gate.wait()) for _ in range(10)]
        await asyncio.sleep(0.01)
        watcher = gate._watcher
        assert watcher is not None and not watcher.done()
        board.ended()
        await asyncio.wait_for(asyncio.gather(*waiters), 1.0)  # quiet: all ten go at once, well before max_defer
        assert gate._watcher is watcher and watcher.done()  # one watcher read the board for all ten
    finally:
        board.close()
        gate.close()


def test_no_board_no_gate(tmp_path: Path):
    assert QuietGate.open(tmp_path) is None  # a single-process host keeps no board
    RequestBoard(tmp_path / "state").close()
    assert (tmp_path / "state" / BOARD_FILE).stat().st_mode & 0o077 == 0  # the host's state dir stays private


def test_a_restarted_host_resets_the_board_its_old_readers_still_map(tmp_path: Path):
    first = RequestBoard(tmp_path)
    gate = gate_on(tmp_path)
    first.started()
    assert gate.read()[0] == 1
    second = RequestBoard(tmp_path)  # the host killed and started again: its old worker may still be exiting
    try:
        assert gate.read() == (0, 0.0)  # the same file, reset in place (never truncated below its size)
        second.started()
        assert gate.read()[0] == 1
    finally:
        first.close()
        second.close()
        gate.close()
