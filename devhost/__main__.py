"""`python -m devhost [--port 7071] [--state-dir .devhost] [--app function_app] [--durable-latency MS]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from pathlib import Path

from devhost.config import SettingError
from devhost.functions import AppLoadError
from devhost.host import DevHost, HostOptions
from devhost.latency import JITTER_ENV, LATENCY_ENV, SEED_ENV, milliseconds
from devhost.store import StateDirInUseError

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
        "--no-local-settings",
        dest="local_settings",
        action="store_false",
        help="ignore local.settings.json: settings come from the environment only",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO"
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


def configure_logging(level: str) -> None:
    """Log to stdout as `[2025-01-01T12:00:00.123Z] message`, like `func start`."""
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


async def serve(options: HostOptions) -> None:
    """Run until SIGINT or SIGTERM, then shut down gracefully."""
    host = DevHost(options)
    try:
        await host.start()
    except (AppLoadError, SettingError, StateDirInUseError, OSError) as error:
        logger.error("The host could not start: %s", error)
        await host.stop()
        raise SystemExit(1) from error
    sys.stdout.write(host.banner())
    sys.stdout.write(f"Host started: {host.base_url} (state in {options.state_dir}). Press Ctrl+C to stop.\n\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        logger.info("Stopping the host...")
        await host.stop()
        logger.info("Host stopped.")


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
        local_settings=args.local_settings,
        durable_latency_ms=args.durable_latency,
        durable_jitter_ms=args.durable_jitter,
        durable_seed=args.durable_seed,
    )
    asyncio.run(serve(options))
    return 0


if __name__ == "__main__":
    sys.exit(main())
