"""`python -m devhost [--port 7071] [--state-dir .devhost] [--app function_app] [--durable-latency MS]`.

Two processes by default, as on Azure's Flex Consumption plan: this one serves the HTTP triggers (and proxies the
Durable HTTP API), a durable worker it starts runs the durable functions and the timer triggers (`devhost.host`,
`devhost.supervisor`, `devhost.worker`). `--single-process` runs everything in this one.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from devhost.easyauth import EASY_AUTH_ENV, TOKEN_PREFIX
from devhost.host import STARTUP_ERRORS, DevHost, HostOptions
from devhost.invocation import configure_logging
from devhost.latency import JITTER_ENV, LATENCY_ENV, SEED_ENV, milliseconds

__all__ = ["configure_logging", "main", "parse_args", "serve"]

logger = logging.getLogger("devhost")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m devhost", description="Run this Functions app locally, without Azure Functions Core Tools."
    )
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071; 0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--state-dir", type=Path, default=Path(".devhost"), help="where durable state lives")
    parser.add_argument(
        "--app",
        default="function_app",
        help="the app module (importable from --script-root) or a path to its .py file (default function_app)",
    )
    parser.add_argument(
        "--script-root",
        type=Path,
        default=None,
        help="folder with host.json and local.settings.json (default: the current folder, or the .py file's folder)",
    )
    parser.add_argument("--enable-auth", action="store_true", help="check function keys, as on Azure")
    parser.add_argument(
        "--easy-auth",
        action="store_true",
        default=None,
        help=(
            "stand in for App Service Authentication in front of the HTTP triggers: drop X-MS-CLIENT-PRINCIPAL* "
            f"headers from clients, and sign in 'Authorization: Bearer {TOKEN_PREFIX}<id>' as principal <id> "
            f"(default: ${EASY_AUTH_ENV}, else off)"
        ),
    )
    parser.add_argument(
        "--no-local-settings",
        dest="local_settings",
        action="store_false",
        help="ignore local.settings.json: settings come from the environment only",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO"
    )
    parser.add_argument(
        "--single-process",
        action="store_true",
        help=(
            "run the durable functions (orchestrations, activities, entities) and the timer triggers in this process "
            "too (default: in a durable worker process of their own, as Azure's Flex Consumption plan runs the http "
            "and durable groups on different instances)"
        ),
    )
    durable = parser.add_argument_group(
        "Durable queue latency",
        "Deliver every Durable message (orchestration starts, events, activity work items and results, entity "
        "operations and responses, timers) no sooner than LATENCY + a random 0-JITTER ms after it is committed, as "
        "on Azure Storage's queues (polled up to every 30 s by default). Messages from different senders may then "
        "overtake each other; entity operations from one sender to one entity keep their order. The command line "
        "wins over the environment variables.",
    )
    durable.add_argument(
        "--durable-latency",
        type=milliseconds,
        default=None,
        metavar="MS",
        help=f"the latency of every Durable hop in milliseconds (default: ${LATENCY_ENV}, else 0: at once)",
    )
    durable.add_argument(
        "--durable-jitter",
        type=milliseconds,
        default=None,
        metavar="MS",
        help=(
            f"the random extra delay, 0 to MS milliseconds (default: half the latency; ${JITTER_ENV} when the "
            "latency comes from the environment)"
        ),
    )
    durable.add_argument(
        "--durable-seed",
        type=int,
        default=None,
        metavar="N",
        help=f"seed the jitter's random numbers, for reproducible runs (default: ${SEED_ENV}, else unseeded)",
    )
    return parser.parse_args(argv)


async def serve(options: HostOptions) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully; exit non-zero if the durable worker dies first."""
    host = DevHost(options)
    try:
        await host.start()
    except STARTUP_ERRORS as error:
        logger.error("The host could not start: %s", error)
        await host.stop()
        raise SystemExit(1) from error
    except BaseException:
        await host.stop()
        raise
    sys.stdout.write(host.banner())
    sys.stdout.write(f"Host started: {host.base_url} (state in {options.state_dir}). Press Ctrl+C to stop.\n\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    worker_code = None
    try:
        worker_code = await _until_stopped(stop, host.worker_exit)
        if worker_code is not None:
            logger.error(
                "The durable worker (pid %s) exited with code %d: stopping the host", host.worker_pid, worker_code
            )
    finally:
        logger.info("Stopping the host...")
        await host.stop()
        logger.info("Host stopped.")
    if worker_code is not None:
        raise SystemExit(1)


async def _until_stopped(stop: asyncio.Event, worker_exit: asyncio.Future[int] | None) -> int | None:
    """Wait for a stop signal, or for the durable worker to exit on its own: then its exit code, else None."""
    stopped = asyncio.ensure_future(stop.wait())
    waits: set[asyncio.Future[Any]] = {stopped}
    if worker_exit is not None:
        waits.add(worker_exit)
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if stop.is_set() or worker_exit is None:
        return None
    return worker_exit.result()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    options = HostOptions(
        app=args.app,
        script_root=args.script_root,
        state_dir=args.state_dir,
        port=args.port,
        host=args.host,
        enable_auth=args.enable_auth,
        easy_auth=args.easy_auth,
        local_settings=args.local_settings,
        durable_latency_ms=args.durable_latency,
        durable_jitter_ms=args.durable_jitter,
        durable_seed=args.durable_seed,
        role="single" if args.single_process else "http",
    )
    asyncio.run(serve(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
