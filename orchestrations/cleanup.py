"""The cleanup timer: evicts idle sessions and purges old orchestration histories."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from memory_core import api
from memory_core.runtime import get_service
from orchestrations.host import DurableSessionHost

logger = logging.getLogger(__name__)

bp = df.Blueprint()


@bp.timer_trigger(schedule="%CLEANUP_SCHEDULE%", arg_name="timer", run_on_startup=False)
@bp.durable_client_input(client_name="client")
async def cleanup_timer(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Find stale sessions and start their eviction (at most once per EVICTION_INTERVAL_SECONDS)."""
    if timer.past_due:
        logger.warning("Cleanup timer is past due")
    await api.cleanup(await get_service(), DurableSessionHost(client))
