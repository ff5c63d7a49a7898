"""The Durable Functions HTTP API (`/runtime/webhooks/durabletask/...`), as the extension's HttpApiHandler serves it.

The same handler serves the public path and the client binding's `rpcBaseUrl`, which is every
`DurableOrchestrationClient` call's target. Shapes, status codes and encodings follow the extension.

It serves what the app and its tests use: starting instances, their status (with history), the instance query,
terminate, purges, raising events, and reading and signalling entities. Suspend, resume, rewind, restart and listing
entities answer 501 with a JSON `Message` saying devhost does not emulate them; their URL templates stay in the
management URLs, whose keys the SDK copies into `create_check_status_response`'s payload as the extension sends them.

It runs where the durable back end runs: in the durable worker process by default (`devhost.worker`), on its internal
loopback port, which the host's public port proxies to (`devhost.proxy`). URLs it hands out name the public port:
a proxied request keeps its `Host`, and a request made straight to the internal port (the SDK's client calls) gets
the public port instead (`internal_port`, `public_port`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from devhost.engine import DurableEngine, DurableError, scheduler_id
from devhost.history import EventType, format_status_time, parse_time
from devhost.store import TERMINAL_STATUSES, EntityRow, Instance

logger = logging.getLogger(__name__)

# The extension's page size of an instance query without `top` (OrchestrationStatusQueryCondition.PageSize).
PAGE_SIZE = 100
CONTINUATION_HEADER = "x-ms-continuation-token"

# Instance operations of the extension's HTTP API that devhost answers with 501.
_NOT_EMULATED_OPERATIONS = ("suspend", "resume", "rewind", "restart")

RUNTIME_STATUSES = (
    "Running",
    "Completed",
    "ContinuedAsNew",
    "Failed",
    "Canceled",
    "Terminated",
    "Pending",
    "Suspended",
)


def _bool_param(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    return default


def _time_param(request: web.Request, name: str) -> datetime | None:
    value = request.query.get(name)
    if not value:
        return None
    try:
        return parse_time(value.strip())
    except ValueError:
        return None


def _status_param(request: web.Request) -> list[str] | None:
    values = [v for raw in request.query.getall("runtimeStatus", []) for v in raw.split(",")]
    wanted = {v.strip().lower() for v in values if v.strip()}
    statuses = [s for s in RUNTIME_STATUSES if s.lower() in wanted]
    return statuses or None


def _error(status: int, message: str) -> web.Response:
    body: dict[str, Any] = {"Message": message}
    if status == 400:
        body["ExceptionMessage"] = message
    return web.json_response(body, status=status)


def _not_emulated(what: str) -> web.Response:
    return _error(501, f"devhost does not emulate {what} (see devhost/README.md)")


def _loads(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def _continuation_token(after: str) -> str:
    """An opaque token for the page that starts after instance id `after`."""
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode("utf-8")).decode("ascii")


def _after(token: str | None) -> str | None:
    """The instance id a continuation token continues after (None: from the first page). Raises ValueError."""
    if not token or token == "null":
        return None
    try:
        after = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))["after"]
    except (binascii.Error, UnicodeError, ValueError, KeyError, TypeError) as error:
        raise ValueError("Invalid continuation token") from error
    if not isinstance(after, str):
        raise ValueError("Invalid continuation token")
    return after


def management_urls(public_base: str, query_suffix: str, instance_id: str) -> dict[str, str]:
    """The check-status payload (`id`, `statusQueryGetUri`, ...) of one instance.

    Args:
        public_base: the API's base URL, e.g. `http://localhost:7071/runtime/webhooks/durabletask`.
        query_suffix: the query every URL carries (`taskHub=...&connection=Storage[&code=...]`).
        instance_id: the instance (quoted into the URLs).
    """
    prefix = f"{public_base.rstrip('/')}/instances/{quote(instance_id, safe='')}"
    query = query_suffix
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{prefix}?{query}",
        "sendEventPostUri": f"{prefix}/raiseEvent/{{eventName}}?{query}",
        "terminatePostUri": f"{prefix}/terminate?reason={{text}}&{query}",
        "rewindPostUri": f"{prefix}/rewind?reason={{text}}&{query}",
        "purgeHistoryDeleteUri": f"{prefix}?{query}",
        "restartPostUri": f"{prefix}/restart?{query}",
        "suspendPostUri": f"{prefix}/suspend?reason={{text}}&{query}",
        "resumePostUri": f"{prefix}/resume?reason={{text}}&{query}",
    }


class DurableHttpApi:
    """Parses Durable HTTP API paths and answers them from the `DurableEngine`.

    Args:
        engine: the durable back end.
        hub_name: the task hub.
        public_base: the API's public base URL (`http://localhost:7071/runtime/webhooks/durabletask`).
        query_suffix: the query every management URL carries.
        internal_port: the port this API is served on when it is not the public one (the durable worker's); URLs
            derived from a request to it name `public_port` instead.
        public_port: the host's public port.
    """

    def __init__(
        self,
        engine: DurableEngine,
        hub_name: str,
        public_base: str,
        query_suffix: str,
        *,
        internal_port: int | None = None,
        public_port: int | None = None,
    ) -> None:
        self._engine = engine
        self._hub_name = hub_name
        self._public_base = public_base.rstrip("/")
        self._query_suffix = query_suffix
        self._internal_port = internal_port
        self._public_port = public_port

    # ------------------------------------------------------------------ payloads

    def management_urls(self, instance_id: str, origin: str | None = None) -> dict[str, str]:
        """The check-status payload (`id`, `statusQueryGetUri`, ...) for one instance, on `origin` if given."""
        base = self._public_base
        if origin:
            base = origin.rstrip("/") + "/runtime/webhooks/durabletask"
        return management_urls(base, self._query_suffix, instance_id)

    def _public_url(self, request: web.Request) -> URL:
        """The request's URL as a client outside sees it: on the public port when it came to the internal one."""
        url = request.url
        if self._internal_port is not None and self._public_port is not None and url.port == self._internal_port:
            url = url.with_port(self._public_port)
        return url

    def _check_status_response(self, request: web.Request, instance_id: str) -> web.Response:
        url = self._public_url(request)
        payload = self.management_urls(instance_id, f"{url.scheme}://{url.raw_authority}")
        return web.json_response(
            payload,
            status=202,
            headers={"Location": payload["statusQueryGetUri"], "Retry-After": "10"},
        )

    def _status_payload(
        self, instance: Instance, *, show_input: bool, show_history: bool, show_history_output: bool
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "name": instance.name,
            "instanceId": instance.instance_id,
            "runtimeStatus": instance.status,
            "input": _loads(instance.input) if show_input else None,
            "customStatus": _loads(instance.custom_status),
            "output": _loads(instance.output),
            "createdTime": format_status_time(datetime.fromtimestamp(instance.created_time, UTC)),
            "lastUpdatedTime": format_status_time(datetime.fromtimestamp(instance.last_updated_time, UTC)),
            "historyEvents": None,
        }
        if show_history:
            history = self._engine.store.load_history(instance.instance_id)
            payload["historyEvents"] = status_history(history, show_history_output, show_input)
        return payload

    # ------------------------------------------------------------------ dispatch

    async def handle(self, request: web.Request, path: str) -> web.StreamResponse:
        """Answer one request; `path` is what follows the API's base path."""
        segments = [s for s in path.strip("/").split("/")] if path.strip("/") else []
        try:
            if segments and segments[0] == "orchestrators" and len(segments) in (2, 3):
                if request.method != "POST":
                    return web.Response(status=404)
                return await self._start(request, segments[1], segments[2] if len(segments) == 3 else None)
            if segments and segments[0] == "entities" and 1 <= len(segments) <= 3:
                return await self._entities(request, segments[1:])
            if segments and segments[0] == "instances":
                return await self._instances(request, segments[1:])
        except DurableError as refused:
            return _error(refused.status, refused.message)
        return web.Response(status=404)

    async def _start(self, request: web.Request, name: str, instance_id: str | None) -> web.StreamResponse:
        text = (await request.read()).decode("utf-8")
        input_token: str | None = None
        if text.strip():
            try:
                input_token = json.dumps(json.loads(text))
            except ValueError:
                return _error(400, "Invalid JSON content")
        version = request.query.get("version", "")
        instance_id = await self._engine.start_instance(name, instance_id or None, input_token, version)
        return self._check_status_response(request, instance_id)

    async def _instances(self, request: web.Request, segments: list[str]) -> web.StreamResponse:
        if not segments:
            if request.method == "GET":
                return self._list(request)
            if request.method == "DELETE":
                return self._purge_by(request)
            return web.Response(status=404)
        instance_id = segments[0]
        if len(segments) == 1:
            if request.method == "GET":
                return self._status(request, instance_id)
            if request.method == "DELETE":
                result = self._engine.purge(instance_id)
                return web.json_response({"instancesDeleted": result.instances_deleted})
            return web.Response(status=404)
        operation = segments[1].lower()
        if request.method != "POST":
            return web.Response(status=404)
        if operation == "raiseevent" and len(segments) == 3:
            return await self._raise_event(request, instance_id, segments[2])
        if len(segments) != 2:
            return web.Response(status=404)
        if operation == "terminate":
            await self._engine.terminate(instance_id, request.query.get("reason"))
            return web.Response(status=202)
        if operation in _NOT_EMULATED_OPERATIONS:
            return _not_emulated(f"the {operation} operation")
        return web.Response(status=404)

    def _entity_payload(self, entity: EntityRow, *, show_input: bool) -> dict[str, Any]:
        """An entity as the instance query shows it on the Azure Storage back end.

        A Running instance whose input is its scheduler state and whose custom status says it exists (the
        extension's `DurableEntityStatus` and `EntityQueryResult` read them so).
        """
        modified = format_status_time(datetime.fromtimestamp(entity.last_modified, UTC))
        return {
            "name": entity.name,
            "instanceId": entity.entity_id,
            "runtimeStatus": "Running",
            "input": {"exists": True, "state": entity.state} if show_input else None,
            "customStatus": {"entityExists": True},
            "output": None,
            "createdTime": modified,
            "lastUpdatedTime": modified,
            "historyEvents": None,
        }

    def _status(self, request: web.Request, instance_id: str) -> web.StreamResponse:
        instance = self._engine.store.get_instance(instance_id)
        if instance is None:
            entity = self._engine.store.get_entity(instance_id) if instance_id.startswith("@") else None
            if entity is not None:
                payload = self._entity_payload(entity, show_input=_bool_param(request, "showInput", True))
                return web.json_response(payload, status=202, headers={"Retry-After": "5"})
            return web.Response(status=404)
        payload = self._status_payload(
            instance,
            show_input=_bool_param(request, "showInput", True),
            show_history=_bool_param(request, "showHistory", False),
            show_history_output=_bool_param(request, "showHistoryOutput", False),
        )
        if instance.status in ("Running", "Pending", "ContinuedAsNew", "Suspended"):
            return web.json_response(
                payload, status=202, headers={"Location": str(self._public_url(request)), "Retry-After": "5"}
            )
        if instance.status == "Failed" and _bool_param(request, "returnInternalServerErrorOnFailure", False):
            return web.json_response(payload, status=500)
        return web.json_response(payload, status=200)

    def _list(self, request: web.Request) -> web.StreamResponse:
        """One page of the instance query, as the extension's `HandleGetStatusRequestAsync` answers it.

        The page size is `top`, else 100 (`OrchestrationStatusQueryCondition.PageSize`); the request's
        `x-ms-continuation-token` header continues a query, and the answer's header holds the next page's token, or
        "null" after the last page. Entities are listed too (`@name@key`), as the Azure Storage back end lists them.
        A client that does not follow the token (the Python SDK's `get_status_by`) sees the first page only.
        """
        created_from = _time_param(request, "createdTimeFrom")
        created_to = _time_param(request, "createdTimeTo")
        try:
            top = int(request.query.get("top", "0")) or PAGE_SIZE
        except ValueError:
            top = PAGE_SIZE
        try:
            after = _after(request.headers.get(CONTINUATION_HEADER))
        except ValueError as error:
            return _error(400, str(error))
        rows = self._engine.store.query_page(
            created_from=created_from.timestamp() if created_from else None,
            created_to=created_to.timestamp() if created_to else None,
            statuses=_status_param(request),
            prefix=request.query.get("instanceIdPrefix") or None,
            after=after,
            limit=max(top, 1) + 1,
        )
        page, more = rows[: max(top, 1)], len(rows) > max(top, 1)
        show_input = _bool_param(request, "showInput", True)
        payload = [
            self._entity_payload(row, show_input=show_input)
            if isinstance(row, EntityRow)
            else self._status_payload(row, show_input=show_input, show_history=False, show_history_output=False)
            for row in page
        ]
        token = "null"
        if more:
            last = page[-1]
            token = _continuation_token(last.entity_id if isinstance(last, EntityRow) else last.instance_id)
        return web.json_response(payload, headers={CONTINUATION_HEADER: token})

    def _purge_by(self, request: web.Request) -> web.StreamResponse:
        created_from = _time_param(request, "createdTimeFrom")
        if created_from is None:
            return web.json_response("Please provide value for 'createdTimeFrom' parameter.", status=400)
        created_to = _time_param(request, "createdTimeTo") or datetime.now(UTC)
        result = self._engine.purge_by(created_from.timestamp(), created_to.timestamp(), _status_param(request))
        if result.instances_deleted == 0:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": result.instances_deleted})

    async def _raise_event(self, request: web.Request, instance_id: str, event_name: str) -> web.StreamResponse:
        instance = self._engine.store.get_instance(instance_id)
        if instance is None:
            return web.Response(status=404)
        if instance.status in TERMINAL_STATUSES:
            return web.Response(status=410)
        if request.content_type.lower() != "application/json":
            return _error(400, "Only application/json request content is supported")
        text = (await request.read()).decode("utf-8")
        try:
            json.loads(text)
        except ValueError:
            return _error(400, "Invalid JSON content")
        await self._engine.raise_event(instance_id, event_name, text)
        return web.Response(status=202)

    async def _entities(self, request: web.Request, segments: list[str]) -> web.StreamResponse:
        name = segments[0] if segments else ""
        key = segments[1] if len(segments) > 1 else ""
        key = "" if key == "$" else key
        if request.method == "GET":
            if len(segments) < 2:
                return _not_emulated("listing entities (the instance query lists them)")
            state = self._engine.store.get_entity_state(scheduler_id(name, key))
            if state is None:
                return web.Response(status=404)
            return web.Response(text=state, content_type="application/json")
        if request.method not in ("POST", "DELETE") or len(segments) < 2:
            return web.Response(status=404)
        operation = "delete" if request.method == "DELETE" else request.query.get("op", "")
        body = await request.read()
        input_text: str | None = None
        if body:
            text = body.decode("utf-8")
            if request.content_type.lower() == "application/json":
                try:
                    json.loads(text)
                except ValueError as error:
                    return _error(400, f"Could not parse JSON content: {error}")
                input_text = text
            else:
                input_text = json.dumps(text)
        await self._engine.signal_entity(name, key, operation, input_text)
        return web.Response(status=202)


# ---------------------------------------------------------------------- history for the status API

_EVENT_NAMES = {int(t): "".join(part.capitalize() for part in t.name.split("_")) for t in EventType}


def _json_or_text(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


_RESULT_EVENTS = (EventType.TASK_COMPLETED, EventType.TASK_FAILED)
_SCHEDULING_EVENTS = (EventType.TASK_SCHEDULED,)


def status_history(history: list[dict[str, Any]], show_output: bool, show_input: bool) -> list[dict[str, Any]]:
    """The `historyEvents` of a status query, shaped like the extension's: scheduling events folded into results."""
    scheduled = {e["EventId"]: e for e in history if e["EventType"] in _SCHEDULING_EVENTS}
    completed_ids = {e.get("TaskScheduledId") for e in history if e["EventType"] in _RESULT_EVENTS}
    events: list[dict[str, Any]] = []
    for event in history:
        event_type = event["EventType"]
        if event_type in (EventType.ORCHESTRATOR_STARTED, EventType.ORCHESTRATOR_COMPLETED):
            continue
        if event_type in _SCHEDULING_EVENTS and event["EventId"] in completed_ids:
            continue
        item: dict[str, Any] = {"EventType": _EVENT_NAMES.get(event_type, str(event_type))}
        if event.get("EventId", -1) != -1:
            item["EventId"] = event["EventId"]
        item["Timestamp"] = event["Timestamp"]
        if event_type in _RESULT_EVENTS:
            _add_result_fields(item, event, scheduled.get(event.get("TaskScheduledId"), {}), show_output)
        else:
            _add_event_fields(item, event, show_output, show_input)
        events.append(item)
    return events


def _add_result_fields(item: dict[str, Any], event: dict[str, Any], origin: dict[str, Any], show_output: bool) -> None:
    """An activity's result, with the name and time of the event that scheduled it."""
    item["FunctionName"] = origin.get("Name")
    item["ScheduledTime"] = origin.get("Timestamp")
    if event["EventType"] == EventType.TASK_FAILED:
        item["Reason"] = event.get("Reason")
        if show_output:
            item["Details"] = event.get("Details")
    elif show_output:
        item["Result"] = _json_or_text(event.get("Result"))


def _add_event_fields(item: dict[str, Any], event: dict[str, Any], show_output: bool, show_input: bool) -> None:
    """The type-specific fields of every other event."""
    event_type = event["EventType"]
    if event_type == EventType.EXECUTION_STARTED:
        item["FunctionName"] = event.get("Name")
        if show_input:
            item["Input"] = _json_or_text(event.get("Input"))
    elif event_type in _SCHEDULING_EVENTS:
        item["FunctionName"] = event.get("Name")
    elif event_type in (EventType.TIMER_CREATED, EventType.TIMER_FIRED):
        item["FireAt"] = event.get("FireAt")
        if event_type == EventType.TIMER_FIRED:
            item["TimerId"] = event.get("TimerId")
    elif event_type in (EventType.EVENT_RAISED, EventType.EVENT_SENT):
        item["Name"] = event.get("Name")
        if event_type == EventType.EVENT_SENT:
            item["InstanceId"] = event.get("InstanceId")
        if show_output:
            item["Input"] = _json_or_text(event.get("Input"))
    elif event_type == EventType.EXECUTION_COMPLETED:
        item["OrchestrationStatus"] = event.get("OrchestrationStatus")
        if show_output:
            item["Result"] = _json_or_text(event.get("Result"))
    elif event_type == EventType.EXECUTION_TERMINATED:
        item["Input"] = event.get("Input")
