"""The cleanup timer: evicts idle sessions and purges old orchestration histories."""

from __future__ import annotations

import logging
import weakref
from datetime import UTC, datetime, timedelta

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus

from memory_core import use_cases
from memory_core.runtime import get_service
from memory_core.service import MemoryService
from orchestrations.host import DurableSessionHost

logger = logging.getLogger(__name__)

bp = df.Blueprint()

# Finished histories are purged at most once per PURGE_INTERVAL, not on every run of the timer (every minute): a purge
# by creation time is a query of the task hub's Instances table on CreatedTime, which is no key of that table (its
# partition key is the instance id), so Azure Table storage reads the whole table to answer it (Azure/durabletask,
# DurableTask.AzureStorage/Tracking/OrchestrationInstanceStatusQueryCondition.cs and AzureTableTrackingStore.cs).
# Histories are kept for days (HISTORY_RETENTION_DAYS), so an hour's delay changes nothing but the number of scans.
PURGE_INTERVAL = timedelta(hours=1)
# Each purge covers a sliding window of creation times that ends at the retention line and reaches back as far again
# as the retention (at least a day) instead of to a fixed date: it bounds what one purge selects, and purges skipped
# for that long (a stopped app) still leave nothing behind. A user's forget purges their histories whatever their age.
MIN_PURGE_WINDOW = timedelta(days=1)
FINISHED = [
    OrchestrationRuntimeStatus.Completed,
    OrchestrationRuntimeStatus.Failed,
    OrchestrationRuntimeStatus.Terminated,
]
# When each worker's service last purged. The Functions host runs a timer function on one instance at a time (a lock
# in host storage; Learn, "Timer trigger for Azure Functions"), so across instances that is one purge an hour, and one
# more when another instance takes the timer over.
_last_purge: weakref.WeakKeyDictionary[MemoryService, datetime] = weakref.WeakKeyDictionary()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CleanupHost(DurableSessionHost):
    """The session host of the cleanup timer: purges finished histories over a sliding window, at most hourly."""

    def __init__(self, client: df.DurableOrchestrationClient, service: MemoryService) -> None:
        super().__init__(client)
        self._purge_client = client
        self._service = service

    async def purge_finished(self, before: datetime) -> int:
        """Purge histories that finished and were created in the window before ``before``, unless one did lately."""
        now, last = _utcnow(), _last_purge.get(self._service)
        if last is not None and now - last < PURGE_INTERVAL:
            return 0
        retention = timedelta(days=self._service.settings.HISTORY_RETENTION_DAYS)
        window = max(retention, MIN_PURGE_WINDOW)
        result = await self._purge_client.purge_instance_history_by(
            created_time_from=before - window, created_time_to=before, runtime_status=FINISHED
        )
        _last_purge[self._service] = now
        return int(result.instances_deleted)


@bp.timer_trigger(schedule="%CLEANUP_SCHEDULE%", arg_name="timer", run_on_startup=False)
@bp.durable_client_input(client_name="client")
async def cleanup_timer(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Find stale sessions and start their eviction (at most once per EVICTION_INTERVAL_SECONDS)."""
    if timer.past_due:
        logger.warning("Cleanup timer is past due")
    service = await get_service()
    await use_cases.cleanup(service, CleanupHost(client, service))
