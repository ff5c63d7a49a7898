"""A local host for this Azure Functions app (Python v2 model + Durable Functions 1.x), without Core Tools.

`python -m devhost` serves `function_app.py` like `func start` does: HTTP triggers, the Durable client binding and
HTTP API, orchestrations replayed through the SDK's own executor, entities, activities and timer triggers, with all
durable state in SQLite under the state directory. See `devhost.engine` for how work flows and survives a crash.
"""

from devhost.host import DevHost, HostOptions

__all__ = ["DevHost", "HostOptions"]
