"""Queue latency: when a Durable message becomes visible, so the local back end can behave like Azure Storage's queues.

On Azure (Azure Storage provider) every Durable message rides a Storage queue, and an idle queue is polled at most
every `maxQueuePollingInterval` (30 s by default): a hop can take seconds, and messages from different senders can
overtake each other. `python -m devhost --durable-latency MS [--durable-jitter MS]` makes every message (orchestration
starts, events, control messages, activity work items and results, entity operations and responses, durable timers)
visible no sooner than `latency + U(0, jitter)` milliseconds after it was committed. Entity operations from one
sender to one entity keep their order; see `DurableEngine._entity_visible_at`.

Latency 0 (the default) means "at once": `deliver_at` returns 0.0, which is what every message carried before.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import time
from collections.abc import Mapping

from devhost.config import SettingError

LATENCY_ENV = "DEVHOST_DURABLE_LATENCY_MS"
JITTER_ENV = "DEVHOST_DURABLE_JITTER_MS"
SEED_ENV = "DEVHOST_DURABLE_SEED"


class QueueLatency:
    """The delay of one Durable hop: `latency + U(0, jitter)`, drawn from a (optionally seeded) random generator.

    Attributes:
        latency_ms: the fixed part of every hop, in milliseconds.
        jitter_ms: the random part's upper bound, in milliseconds (half the latency unless given).
        enabled: False when both are 0: messages are then visible at once, as without this option.
    """

    def __init__(self, latency_ms: float = 0.0, jitter_ms: float | None = None, seed: int | None = None) -> None:
        values = [latency_ms] if jitter_ms is None else [latency_ms, jitter_ms]
        if not all(math.isfinite(value) and value >= 0 for value in values):
            raise ValueError("the durable latency and jitter must be 0 or more milliseconds")
        self.latency_ms = float(latency_ms)
        self.jitter_ms = self.latency_ms / 2 if jitter_ms is None else float(jitter_ms)
        self.enabled = self.latency_ms > 0 or self.jitter_ms > 0
        self._random = random.Random(seed)

    def delay(self) -> float:
        """One hop's delay in seconds (0.0 when disabled)."""
        if not self.enabled:
            return 0.0
        return (self.latency_ms + self._random.uniform(0.0, self.jitter_ms)) / 1000

    def deliver_at(self, not_before: float = 0.0) -> float:
        """When a message committed now becomes visible (epoch seconds), or 0.0 ("at once") when disabled.

        Args:
            not_before: the earliest time the message is meant for (a durable timer's or scheduled signal's fire
                time); the hop's delay is counted from it when it is later than now.

        Returns:
            `max(now, not_before) + delay`, or `not_before` unchanged when the latency is off.
        """
        if not self.enabled:
            return not_before
        return max(time.time(), not_before) + self.delay()

    def describe(self) -> str:
        """The start-up line that tells the user the setting."""
        if not self.enabled:
            return (
                "Durable messages are delivered at once (--durable-latency MS adds the latency of Azure Storage's "
                "queues)."
            )
        return (
            f"Durable latency: {self.latency_ms:g} ms (+0-{self.jitter_ms:g} ms jitter), as on Azure Storage's queues."
        )

    @classmethod
    def from_settings(
        cls,
        latency_ms: float | None,
        jitter_ms: float | None,
        seed: int | None,
        environ: Mapping[str, str] | None = None,
    ) -> QueueLatency:
        """The latency from explicit values (the command line), else from the environment, else none.

        A latency given explicitly comes with its own jitter (given, or half of it): the environment's jitter is
        then ignored, so `--durable-latency 0` turns the delay off whatever the environment says.

        Args:
            latency_ms: `--durable-latency`, or None to read `DEVHOST_DURABLE_LATENCY_MS`.
            jitter_ms: `--durable-jitter`, or None for half the latency (when the latency comes from the
                environment: `DEVHOST_DURABLE_JITTER_MS` if set).
            seed: `--durable-seed`, or None to read `DEVHOST_DURABLE_SEED` (default: unseeded).
            environ: the environment (default `os.environ`).

        Raises:
            SettingError: an environment variable is not a number of milliseconds of 0 or more.
        """
        env = os.environ if environ is None else environ
        latency, jitter = latency_ms, jitter_ms
        if latency is None:
            latency = _number(env, LATENCY_ENV)
            if jitter is None:
                jitter = _number(env, JITTER_ENV)
        seeded = seed
        if seeded is None and env.get(SEED_ENV, "").strip():
            try:
                seeded = int(env[SEED_ENV])
            except ValueError as error:
                raise SettingError(f"{SEED_ENV} must be an integer, not {env[SEED_ENV]!r}") from error
        return cls(latency or 0.0, jitter, seeded)


def _parse_milliseconds(text: str) -> float | None:
    """A finite number of 0 or more, or None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _number(env: Mapping[str, str], name: str) -> float | None:
    text = env.get(name, "").strip()
    if not text:
        return None
    value = _parse_milliseconds(text)
    if value is None:
        raise SettingError(f"{name} must be a number of milliseconds, 0 or more, not {text!r}")
    return value


def milliseconds(text: str) -> float:
    """Argparse type of `--durable-latency`/`--durable-jitter`: a number of milliseconds, 0 or more."""
    value = _parse_milliseconds(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected a number of milliseconds, 0 or more, not {text!r}")
    return value
