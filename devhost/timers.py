"""Timer triggers: 6-field NCRONTAB schedules (seconds first) or TimeSpan intervals (`hh:mm:ss`).

Each timer runs in its own asyncio task that awaits its invocation before computing the next occurrence, so two
invocations of one timer never overlap: an occurrence that falls while the previous invocation still runs is skipped
(as the Functions host's singleton lock does). Last and next fire times are stored, so after a restart an occurrence
that was missed fires at once with `past_due` (when the schedule is monitored, as on Azure).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

import azure.functions as func
from azure.functions.timer import TimerRequest
from croniter import croniter

from devhost.config import SettingError, resolve_setting
from devhost.functions import TimerFunction
from devhost.history import utcnow
from devhost.store import Store

logger = logging.getLogger(__name__)

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2})(?::(\d{2}))?$")

Invoker = Callable[[TimerFunction, func.TimerRequest, str], Awaitable[None]]


class ScheduleError(ValueError):
    """A timer schedule that cannot be parsed."""


@dataclass
class Schedule:
    """A parsed schedule: `next_after(t)` is the first occurrence strictly after `t`."""

    expression: str
    interval: timedelta | None
    zone: tzinfo

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence after `moment` (aware UTC in, aware UTC out)."""
        if self.interval is not None:
            return moment + self.interval
        local = moment.astimezone(self.zone)
        iterator = croniter(self.expression, local, ret_type=datetime, second_at_beginning=True)
        next_time: datetime = iterator.get_next(datetime)
        return next_time.astimezone(UTC)

    def period(self, moment: datetime) -> timedelta:
        """The gap between the next two occurrences after `moment`."""
        first = self.next_after(moment)
        return self.next_after(first) - first


def time_zone() -> tzinfo:
    """`WEBSITE_TIME_ZONE` (an IANA name here), else UTC, as on Linux Functions."""
    name = os.environ.get("WEBSITE_TIME_ZONE")
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        logger.warning("WEBSITE_TIME_ZONE=%r is not a known time zone: using UTC", name)
        return UTC


def parse_schedule(expression: str) -> Schedule:
    """Parse an NCRONTAB expression with six fields, or a TimeSpan such as `00:05:00`."""
    text = expression.strip()
    span = _TIMESPAN.match(text)
    if span:
        days, hours, minutes, seconds = (int(part or 0) for part in span.groups())
        interval = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        if interval <= timedelta(0):
            raise ScheduleError(f"The TimeSpan schedule {expression!r} must be positive")
        return Schedule(text, interval, UTC)
    if len(text.split()) != 6:
        raise ScheduleError(
            f"The schedule {expression!r} must have six fields: {{second}} {{minute}} {{hour}} {{day}} {{month}} "
            f"{{day-of-week}}"
        )
    if not croniter.is_valid(text, second_at_beginning=True):
        raise ScheduleError(f"The schedule {expression!r} is not a valid NCRONTAB expression")
    return Schedule(text, None, time_zone())


class TimerRunner:
    """Runs every timer trigger of the app until stopped."""

    def __init__(self, timers: list[TimerFunction], store: Store, invoke: Invoker) -> None:
        self._store = store
        self._invoke = invoke
        self._tasks: list[asyncio.Task[None]] = []
        self.schedules: dict[str, Schedule] = {}
        self._timers: list[TimerFunction] = []
        for timer in timers:
            try:
                self.schedules[timer.name] = parse_schedule(resolve_setting(timer.schedule))
                self._timers.append(timer)
            except (SettingError, ScheduleError, ValueError) as error:
                logger.error("Timer function %s is disabled: %s", timer.name, error)

    def start(self) -> None:
        """Start one task per timer."""
        for timer in self._timers:
            self._tasks.append(asyncio.create_task(self._run(timer), name=f"timer-{timer.name}"))

    async def stop(self) -> None:
        """Cancel the timers (an invocation in progress is cancelled too)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    def _monitored(self, timer: TimerFunction, schedule: Schedule) -> bool:
        if timer.use_monitor is not None:
            return bool(timer.use_monitor)
        return schedule.period(utcnow()) >= timedelta(minutes=1)

    async def _run(self, timer: TimerFunction) -> None:
        try:
            await self._schedule_loop(timer)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("Timer function %s stopped after an unexpected error", timer.name)

    async def _schedule_loop(self, timer: TimerFunction) -> None:
        schedule = self.schedules[timer.name]
        last_ts, next_ts = self._store.get_timer_state(timer.name)
        last = datetime.fromtimestamp(last_ts, UTC) if last_ts else None
        now = utcnow()
        if next_ts is not None and self._monitored(timer, schedule) and next_ts < now.timestamp():
            scheduled_for = datetime.fromtimestamp(next_ts, UTC)
            logger.info("Timer %s: the occurrence of %s was missed; running it now", timer.name, scheduled_for)
            last = await self._fire(timer, schedule, scheduled_for, last, past_due=True)
        elif timer.run_on_startup:
            last = await self._fire(timer, schedule, utcnow(), last, past_due=False)
        while True:
            now = utcnow()
            due = schedule.next_after(now)
            last_ts = last.timestamp() if last else None
            self._store.set_timer_state(timer.name, last_ts, due.timestamp(), now.timestamp())
            delay = (due - utcnow()).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
            late = utcnow() - due
            last = await self._fire(timer, schedule, due, last, past_due=late > timedelta(seconds=5))

    async def _fire(
        self, timer: TimerFunction, schedule: Schedule, scheduled_for: datetime, last: datetime | None, past_due: bool
    ) -> datetime:
        next_due = schedule.next_after(max(utcnow(), scheduled_for))
        request = TimerRequest(
            past_due=past_due,
            schedule_status={
                "Last": (last or datetime.min.replace(tzinfo=UTC)).isoformat(),
                "Next": next_due.isoformat(),
                "LastUpdated": utcnow().isoformat(),
            },
            schedule={"AdjustForDST": True},
        )
        reason = f"Timer fired at {utcnow().isoformat()}"
        try:
            await self._invoke(timer, request, reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            # the invocation logged its failure already; a timer keeps its schedule
            logger.debug("timer %s invocation failed", timer.name, exc_info=True)
        return scheduled_for
