"""Unit tests of the pieces with no I/O: route templates, timer schedules, the replay of actions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from devhost.history import EventType, new_event, with_played_flags
from devhost.replay import NonDeterminismError, Replayer
from devhost.routing import RequestPathError, Router, compile_route, decode_path
from devhost.timers import ScheduleError, parse_schedule


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("users/{id:int}", "/users/12", {"id": "12"}),
        ("users/{id:int}", "/users/x", None),
        (
            "users/{id:guid}",
            "/users/0f8fad5b-d9cb-469f-a165-70867728950e",
            {"id": "0f8fad5b-d9cb-469f-a165-70867728950e"},
        ),
        ("users/{id:guid}", "/users/nope", None),
        ("users/{name:alpha:minlength(3)}", "/users/ab", None),
        ("users/{name:alpha:minlength(3)}", "/users/abc", {"name": "abc"}),
        ("users/{age:range(1,10)}", "/users/11", None),
        ("files/{name}.{ext}", "/files/report.pdf", {"name": "report", "ext": "pdf"}),
        ("page/{n=1}", "/page", {"n": "1"}),
        ("page/{n?}", "/page", {}),
        ("all/{*rest}", "/all/a/b", {"rest": "a/b"}),
        ("", "/", {}),
    ],
)
def test_route_templates(template: str, path: str, expected: dict | None):
    assert compile_route(template, None).match("/" + path.strip("/") if path.strip("/") else "") == expected


def test_literal_routes_win_over_parameters():
    router = Router([compile_route("items/{id}", "param"), compile_route("items/new", "literal")])
    assert [route.target for route, _ in router.match("/items/new")] == ["literal", "param"]


def test_ncrontab_schedules_have_seconds_first():
    schedule = parse_schedule("*/15 * * * * *")
    start = datetime(2025, 1, 1, 12, 0, 1, tzinfo=UTC)
    assert schedule.next_after(start) == datetime(2025, 1, 1, 12, 0, 15, tzinfo=UTC)
    every_five_minutes = parse_schedule("0 */5 * * * *")
    assert every_five_minutes.next_after(start) == datetime(2025, 1, 1, 12, 5, tzinfo=UTC)


def test_timespan_schedules_and_invalid_ones():
    assert parse_schedule("00:00:30").next_after(datetime(2025, 1, 1, tzinfo=UTC)) == datetime(
        2025, 1, 1, 0, 0, 30, tzinfo=UTC
    )
    with pytest.raises(ScheduleError):
        parse_schedule("*/5 * * * *")  # five fields: NCRONTAB needs six
    with pytest.raises(ScheduleError):
        parse_schedule("61 * * * * *")


T0 = datetime(2025, 1, 1, 12, tzinfo=UTC)


def started() -> list[dict]:
    return [
        new_event(EventType.ORCHESTRATOR_STARTED, T0),
        new_event(EventType.EXECUTION_STARTED, T0, Name="o", Input=None),
    ]


def test_replay_assigns_ids_like_the_extension():
    actions = [
        {"actionType": 6, "externalEventName": "e"},  # no id
        {"actionType": 9, "instanceId": "@c@k", "operation": "add", "input": "1"},
        {
            "actionType": 12,
            "compoundActions": [
                {"actionType": 0, "functionName": "a", "input": "1"},
                {"actionType": 5, "fireAt": "2025-01-01T12:00:01.000000Z", "isCanceled": False},
            ],
        },
    ]
    history = [*started(), new_event(EventType.EVENT_RAISED, T0, Name="e", Input="1")]
    work = Replayer("i", "x", actions).run(history).new_work
    assert [(w.kind, w.event_id, w.name) for w in work] == [
        ("entity", 0, "@c@k"),
        ("activity", 1, "a"),
        ("timer", 2, ""),
    ]


def test_replay_takes_retry_ids_when_the_failure_is_replayed():
    retry = {"firstRetryIntervalInMilliseconds": 1000, "maxNumberOfAttempts": 3}
    actions = [{"actionType": 1, "functionName": "f", "input": "null", "retryOptions": retry}]
    history = [
        *started(),
        new_event(EventType.TASK_SCHEDULED, T0, 0, Name="f"),
        new_event(EventType.ORCHESTRATOR_COMPLETED, T0),
        new_event(EventType.ORCHESTRATOR_STARTED, T0 + timedelta(seconds=1)),
        new_event(EventType.TASK_FAILED, T0, TaskScheduledId=0, Reason="r", Details="d"),
    ]
    work = Replayer("i", "x", actions).run(history).new_work
    assert [(w.kind, w.event_id) for w in work] == [("timer", 1)]
    assert work[0].fire_at == T0 + timedelta(seconds=2)  # now + firstRetryInterval


def test_replay_detects_a_changed_activity_name():
    actions = [{"actionType": 0, "functionName": "b", "input": "null"}]
    history = [*started(), new_event(EventType.TASK_SCHEDULED, T0, 0, Name="a")]
    with pytest.raises(NonDeterminismError, match=r"'a'.*'b'"):
        Replayer("i", "x", actions).run(history)


def test_replay_detects_a_missing_task():
    history = [*started(), new_event(EventType.TIMER_CREATED, T0, 0, FireAt="2025-01-01T12:00:00.000000Z")]
    with pytest.raises(NonDeterminismError, match=r"hasn.t \(yet\?\) scheduled"):
        Replayer("i", "x", []).run(history)


def test_entity_response_is_routed_by_the_recorded_request_id():
    actions = [
        {"actionType": 7, "instanceId": "@c@k", "operation": "get", "input": "null"},
        {"actionType": 0, "functionName": "after", "input": "null"},
    ]
    request = json.dumps({"op": "get", "signal": False, "input": None, "id": "req-1"})
    history = [
        *started(),
        new_event(EventType.EVENT_SENT, T0, 0, InstanceId="@c@k", Name="op", Input=request),
        new_event(EventType.ORCHESTRATOR_COMPLETED, T0),
        new_event(EventType.ORCHESTRATOR_STARTED, T0),
        new_event(EventType.EVENT_RAISED, T0, Name="req-1", Input=json.dumps({"result": "3"})),
    ]
    work = Replayer("i", "x", actions).run(history).new_work
    assert [(w.kind, w.event_id, w.name) for w in work] == [("activity", 1, "after")]


def test_played_flags_mark_events_before_the_last_episode():
    history = [
        *started(),
        new_event(EventType.ORCHESTRATOR_COMPLETED, T0),
        new_event(EventType.ORCHESTRATOR_STARTED, T0),
    ]
    assert [e["IsPlayed"] for e in with_played_flags(history)] == [True, True, True, False]


async def test_timer_runs_on_startup_and_catches_up_a_missed_occurrence(tmp_path):
    import asyncio

    from devhost.functions import TimerFunction
    from devhost.store import Store
    from devhost.timers import TimerRunner

    def timer(name: str, run_on_startup: bool) -> TimerFunction:
        return TimerFunction(name, "0 0 * * * *", run_on_startup, None, "timer", None, frozenset(), print, False)

    store = Store(tmp_path, "hub")
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    store.set_timer_state("missed", hour_ago.timestamp() - 3600, hour_ago.timestamp(), hour_ago.timestamp())
    calls: list[tuple[str, bool]] = []

    async def invoke(function: TimerFunction, request, reason: str) -> None:
        calls.append((function.name, request.past_due))

    runner = TimerRunner([timer("startup", True), timer("missed", False), timer("quiet", False)], store, invoke)
    runner.start()
    for _ in range(100):
        if len(calls) >= 2:
            break
        await asyncio.sleep(0.01)
    await runner.stop()
    store.close()
    assert sorted(calls) == [("missed", True), ("startup", False)]


async def test_no_local_settings_leaves_local_settings_json_unread(tmp_path, monkeypatch):
    import os

    from devhost import DevHost, HostOptions
    from devhost.__main__ import parse_args
    from devhost.config import SettingError
    from tests.devhost.conftest import APP_MODULE, make_script_root

    assert parse_args([]).local_settings is True
    assert parse_args(["--no-local-settings"]).local_settings is False
    root = make_script_root(tmp_path / "root", {"SAMPLE_HUB": "FromTheFile", "SAMPLE_ONLY_IN_FILE": "x"})
    monkeypatch.delenv("SAMPLE_HUB", raising=False)
    monkeypatch.delenv("SAMPLE_ONLY_IN_FILE", raising=False)
    host = DevHost(
        HostOptions(app=APP_MODULE, script_root=root, state_dir=root / "state", port=0, local_settings=False)
    )
    # host.json's %SAMPLE_HUB% is defined only in the file: without it, the host cannot resolve the hub
    with pytest.raises(SettingError, match="SAMPLE_HUB"):
        await host.start()
    await host.stop()
    assert "SAMPLE_ONLY_IN_FILE" not in os.environ


def test_the_state_dir_and_its_files_are_the_owners_only(tmp_path):
    from devhost.store import Store

    state = tmp_path / "state"
    store = Store(state, "Hub")
    with store.transaction() as db:
        db.execute("INSERT INTO meta (key, value) VALUES ('probe', '1')")
    modes = {f.name: oct(f.stat().st_mode & 0o777) for f in state.iterdir()}
    store.close()
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert modes and set(modes.values()) == {"0o600"}, modes


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("/users/a%2Fb/export", "/users/a%2Fb/export"),
        ("/users/a%252Fb/export?x=%2F", "/users/a%2Fb/export"),
        ("/users/%F0%9F%98%80%20x", "/users/😀 x"),
        ("/a/%ED%A0%80", "/a/%ED%A0%80"),  # an escaped surrogate is no UTF-8: kept as written
        ("/a/%C0%AF", "/a/%C0%AF"),  # an overlong form, too
        ("/a/%zz%", "/a/%zz%"),
        ("/a/./b/../c/.", "/a/c/"),
        ("/..", "/"),
    ],
)
def test_request_paths_are_decoded_as_kestrel_decodes_them(raw: str, decoded: str):
    assert decode_path(raw) == decoded


def test_an_escaped_nul_is_refused():
    with pytest.raises(RequestPathError):
        decode_path("/a%00")
