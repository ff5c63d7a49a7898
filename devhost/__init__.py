"""A local host for this Azure Functions app (Python v2 model + Durable Functions 1.x), without Core Tools.

`python -m devhost` serves `function_app.py` like `func start` does: HTTP triggers, the Durable client binding and
HTTP API, orchestrations replayed through the SDK's own executor, entities, activities and timer triggers, with all
durable state in SQLite under the state directory. See `devhost.engine` for how work flows and survives a crash.

By default it runs as two processes, as Azure's Flex Consumption plan runs the `http` and `durable` groups apart:
the host (HTTP triggers, and a proxy of the Durable HTTP API) and a durable worker process (the durable back end and
the timer triggers); see `devhost.host` for the roles, `devhost.supervisor` and `devhost.worker` for the worker's
lifetime. `--single-process`, and a `DevHost` made in code, run everything in one process.
"""

from devhost.host import DevHost, HostOptions

__all__ = ["DevHost", "HostOptions"]
