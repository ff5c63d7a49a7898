"""A small Functions app that exercises every feature of the local host (devhost) in the end-to-end tests."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import azure.functions as func

logger = logging.getLogger(__name__)

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

COUNTER = "counter"
JOURNAL = "journal"

# ---------------------------------------------------------------- HTTP routes


def _json(value: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(value), status_code=status, mimetype="application/json")


@app.route(route="items/{category:alpha}/{item_id:int}", methods=["GET"])
def get_item(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"route": dict(req.route_params), "query": dict(req.params), "url": req.url})


@app.route(route="greet/{name?}", methods=["GET"])
def greet(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"hello {req.route_params.get('name') or 'nobody'}")


@app.route(route="files/{*path}", methods=["GET"])
def files(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"path": req.route_params.get("path")})


@app.route(route="echo", methods=["POST", "PUT"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = req.get_json()
    return func.HttpResponse(
        json.dumps({"method": req.method, "body": body, "header": req.headers.get("x-sample")}),
        status_code=201,
        headers={"X-Echo": "yes"},
        mimetype="application/json",
    )


@app.route(route="nothing", methods=["POST"])
def nothing(req: func.HttpRequest) -> None:
    return None


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret internal detail")


@app.route(route="whoami", methods=["GET"])
async def whoami(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _json({"function_name": context.function_name, "invocation_id": context.invocation_id})


@app.route(route="headers", methods=["GET"])
def headers(req: func.HttpRequest) -> func.HttpResponse:
    """The request's headers as the function gets them (lowercase names)."""
    return _json(dict(req.headers))


@app.route(route="pid", methods=["GET"])
def pid(req: func.HttpRequest) -> func.HttpResponse:
    """The process that runs HTTP triggers."""
    return _json(os.getpid())


@app.route(route="secure/function", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def secure_function(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("function ok")


@app.route(route="secure/admin", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
def secure_admin(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin ok")


@app.route(route="start/{name}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    instance_id = await client.start_new(
        req.route_params["name"], req.params.get("id"), json.loads(body) if body else None
    )
    return client.create_check_status_response(req, instance_id)


@app.route(route="counter/{key}", methods=["GET"])
@app.durable_client_input(client_name="client")
async def read_counter(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    state = await client.read_entity_state(df.EntityId(COUNTER, req.route_params["key"]))
    if not state.entity_exists:
        return func.HttpResponse(status_code=404)
    return _json(state.entity_state)


# ---------------------------------------------------------------- orchestrations


@app.orchestration_trigger(context_name="context")
def full_tour(context: df.DurableOrchestrationContext):
    """Every durable feature devhost emulates in one orchestration."""
    params = context.get_input()
    first = yield context.call_activity("hello", "tour")
    flaky = yield context.call_activity_with_retry("flaky", df.RetryOptions(200, 3), params["attempts_file"])
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=1))
    approval = yield context.wait_for_external_event("approve")
    fan = yield context.task_all([context.call_activity("hello", str(i)) for i in range(4)])
    entity = df.EntityId(COUNTER, params["counter"])
    context.signal_entity(entity, "add", 5)
    after_add = yield context.call_entity(entity, "add", 1)
    got = yield context.call_entity(entity, "get")
    context.set_custom_status({"stage": "done"})
    return {"first": first, "flaky": flaky, "approval": approval, "fan": fan, "after_add": after_add, "got": got}


@app.orchestration_trigger(context_name="context")
def not_emulated(context: df.DurableOrchestrationContext):
    """Uses the Durable feature its input names, one devhost does not emulate: the instance fails, naming it."""
    feature = context.get_input()
    if feature == "sub_orchestrator":
        yield context.call_sub_orchestrator("one_activity", "child")
    elif feature == "task_any":
        yield context.task_any([context.call_activity("hello", "a"), context.call_activity("hello", "b")])
    elif feature == "continue_as_new":
        context.continue_as_new(None)
    return feature


@app.orchestration_trigger(context_name="context")
def one_activity(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("hello", context.get_input()))


@app.orchestration_trigger(context_name="context")
def wait_event(context: df.DurableOrchestrationContext):
    data = yield context.wait_for_external_event("go")
    return {"data": data}


@app.orchestration_trigger(context_name="context")
def timer_then_event(context: df.DurableOrchestrationContext):
    """Crash-test orchestration: a timer, an external event, then an entity call."""
    params = context.get_input()
    yield context.create_timer(context.current_utc_datetime + timedelta(seconds=params.get("seconds", 1)))
    data = yield context.wait_for_external_event("go")
    value = yield context.call_entity(df.EntityId(COUNTER, params["counter"]), "add", 1)
    return {"data": data, "value": value}


@app.orchestration_trigger(context_name="context")
def retry_exhausted(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity_with_retry("always_fails", df.RetryOptions(50, 2), None)
    except Exception as error:  # the activity's failure surfaces here once the attempts are spent
        return {"caught": str(error)}
    return {"caught": None}


@app.orchestration_trigger(context_name="context")
def call_bad_operation(context: df.DurableOrchestrationContext):
    try:
        yield context.call_entity(df.EntityId(COUNTER, context.get_input()), "explode")
    except Exception as error:  # the entity's exception message comes back to the caller
        return {"error": str(error)}
    return {"error": None}


@app.orchestration_trigger(context_name="context")
def failing(context: df.DurableOrchestrationContext):
    yield context.call_activity("hello", "x")
    raise ValueError("boom requested")


_replays: dict[str, int] = {}
_replays_lock = threading.Lock()


@app.orchestration_trigger(context_name="context")
def nondeterministic(context: df.DurableOrchestrationContext):
    """Schedules a different activity every time it is replayed: the host must fail it."""
    with _replays_lock:
        count = _replays.get(context.instance_id, 0)
        _replays[context.instance_id] = count + 1
    yield context.call_activity("hello" if count == 0 else "double", 1)
    yield context.call_activity("hello", "second")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def chain(context: df.DurableOrchestrationContext):
    """N activities one after the other: 2N+1 Durable hops (the start, then each work item and its result)."""
    results = []
    for i in range(context.get_input()):
        results.append((yield context.call_activity("hello", str(i))))
    return results


@app.orchestration_trigger(context_name="context")
def signal_journal(context: df.DurableOrchestrationContext):
    """Signals `append` to the journal entity `key` once per item, in order, from this one sender."""
    params = context.get_input()
    for item in params["items"]:
        context.signal_entity(df.EntityId(JOURNAL, params["key"]), "append", item)
    return len(params["items"])


@app.orchestration_trigger(context_name="context")
def signal_journal_stamped(context: df.DurableOrchestrationContext):
    """Signals one `append` of {"sender", "sent"} to the journal `key`; `sent` is when this episode sent it."""
    params = context.get_input()
    item = {"sender": params["sender"], "sent": context.current_utc_datetime.timestamp()}
    context.signal_entity(df.EntityId(JOURNAL, params["key"]), "append", item)
    return item


@app.orchestration_trigger(context_name="context")
def timer_then_now(context: df.DurableOrchestrationContext):
    """Waits on a durable timer; returns its fire time and the time of the episode the timer woke (epoch seconds)."""
    fire_at = context.current_utc_datetime + timedelta(seconds=context.get_input())
    yield context.create_timer(fire_at)
    return {"fire_at": fire_at.timestamp(), "woke_at": context.current_utc_datetime.timestamp()}


@app.orchestration_trigger(context_name="context")
def where(context: df.DurableOrchestrationContext):
    """The process that runs activities."""
    return (yield context.call_activity("process_id", None))


# ---------------------------------------------------------------- activities


@app.activity_trigger(input_name="ignored")
def process_id(ignored: object) -> int:
    return os.getpid()


@app.activity_trigger(input_name="name")
def hello(name: str) -> str:
    return f"Hello {name}"


@app.activity_trigger(input_name="n")
async def double(n: int) -> int:
    return n * 2


@app.activity_trigger(input_name="path")
def flaky(path: str) -> int:
    """Fails on its first attempt, then succeeds: the attempt count lives in a file."""
    attempts = int(open(path).read()) + 1 if os.path.exists(path) else 1
    with open(path, "w") as handle:
        handle.write(str(attempts))
    if attempts == 1:
        raise RuntimeError("first attempt fails")
    return attempts


@app.activity_trigger(input_name="ignored")
def always_fails(ignored: object) -> None:
    raise RuntimeError("always fails")


# ---------------------------------------------------------------- entity


@app.entity_trigger(context_name="context")
def counter(context: df.DurableEntityContext) -> None:
    value = context.get_state(lambda: 0)
    operation = context.operation_name
    if operation == "add":
        value += context.get_input()
        context.set_state(value)
        context.set_result(value)
    elif operation == "get":
        context.set_result(value)
    elif operation == "delete":
        context.destruct_on_exit()
    else:
        raise ValueError(f"unknown operation {operation}")


@app.entity_trigger(context_name="context")
def journal(context: df.DurableEntityContext) -> None:
    """A list of every `append` input, in the order the operations ran."""
    entries = context.get_state(list)
    if context.operation_name == "append":
        entries.append(context.get_input())
        context.set_state(entries)
    context.set_result(entries)


# ---------------------------------------------------------------- timer


@app.timer_trigger(schedule="%SAMPLE_SCHEDULE%", arg_name="timer", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    """Appends its start and end times to SAMPLE_TIMER_LOG; sleeps SAMPLE_TIMER_SLEEP seconds in between."""
    path = os.environ.get("SAMPLE_TIMER_LOG")
    if not path:
        return
    start = datetime.now(UTC).timestamp()
    time.sleep(float(os.environ.get("SAMPLE_TIMER_SLEEP", "0")))
    with open(path, "a") as handle:
        handle.write(json.dumps({"start": start, "end": datetime.now(UTC).timestamp(), "past_due": timer.past_due}))
        handle.write("\n")
