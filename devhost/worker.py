"""The durable worker: `python -m devhost.worker`, which `python -m devhost` starts (it is not meant to be run by hand).

It is a `DevHost` in the `"durable"` role, with the host's options: the same app, settings and state directory. It
opens the Durable store (waiting up to `devhost.host.WORKER_LOCK_WAIT` for the worker of a host that was just killed
to let go of it), runs the durable back end (orchestration episodes, activities, entities, durable timers) and the
timer triggers, and serves the Durable HTTP API on a free loopback port. Then it reports that port on the ready pipe
(`devhost.supervisor`), or its start-up error, which the host shows before it exits non-zero.

It logs to the same output as the host, in the same format. It ignores SIGINT and stops gracefully on SIGTERM (the
host sends it); when its host dies it exits at once (`devhost.supervisor.watch_lifeline`).

It runs at a lower CPU priority (`WORKER_NICENESS`, every thread it starts included, e.g. the app's ONNX runtime's):
on Azure the `durable` group runs on instances of its own, so background work never takes a CPU from request
handling; on a developer's machine, with a few cores for both processes, the scheduler then gives the host the CPU
first when both want it. An idle host leaves the worker every core. It also starts each orchestration episode and
activity in a quiet moment of the host (`devhost.quiet`), since a priority cannot take back a core from a model run
the worker already started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from devhost.host import STARTUP_ERRORS, DevHost, HostOptions
from devhost.invocation import configure_logging
from devhost.supervisor import report, watch_lifeline

logger = logging.getLogger("devhost")

WORKER_NICENESS = 10  # added to the host's nice value (Unix): the host gets the CPU first when both want it


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line `devhost.supervisor.DurableWorker.spawn` builds."""
    parser = argparse.ArgumentParser(prog="python -m devhost.worker", description=__doc__)
    parser.add_argument("--ready-fd", type=int, required=True, help="pipe to report readiness on")
    parser.add_argument("--lifeline-fd", type=int, required=True, help="pipe whose end of file means the host died")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--options", required=True, help="HostOptions.to_json() of the host, role 'durable'")
    return parser.parse_args(argv)


async def serve(options: HostOptions, ready_fd: int) -> int:
    """Start, report, run until SIGTERM, stop; the exit code."""
    host = DevHost(options)
    try:
        await host.start()
    except Exception as error:  # every start-up failure goes to the host, which shows it and exits non-zero
        if not isinstance(error, STARTUP_ERRORS):
            logger.exception("The durable worker could not start")
        report(ready_fd, {"error": str(error) or type(error).__name__})
        await host.stop()
        return 1
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    report(ready_fd, {"port": host.durable_port, "rpc_path": host.rpc_path, "pid": os.getpid()})
    try:
        await stop.wait()
    finally:
        await host.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker process."""
    args = parse_args(argv)
    with contextlib.suppress(OSError):  # before any thread starts: threads inherit it
        os.nice(WORKER_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the host, which stops this worker in order
    watch_lifeline(args.lifeline_fd)
    os.set_inheritable(args.ready_fd, False)
    configure_logging(args.log_level)
    return asyncio.run(serve(HostOptions.from_json(args.options), args.ready_fd))


if __name__ == "__main__":
    sys.exit(main())
