"""Optional Prometheus metrics on 127.0.0.1 (`[metrics] enabled = true, port = 9464`).

Counts come from the database at scrape time (so every daemon and every CLI decision is counted, and a
restart loses nothing); stage timings (scan latency …) are histograms observed in this process.
Labels carry statuses, reason codes and stage names only — never anything from a mail (R12).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from daemon.store.db import DoorRefusal, Message, ServiceHealth

REGISTRY = CollectorRegistry(auto_describe=True)
STAGE_SECONDS = Histogram(
    "intake_stage_seconds", "Time spent per pipeline stage (scan = clamd latency for the whole message)",
    ["stage"], registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


def observe_stages(timings: dict[str, float]) -> None:
    for stage, seconds in timings.items():
        STAGE_SECONDS.labels(stage).observe(seconds)


class DatabaseCollector(Collector):
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Any]:
        by_status = GaugeMetricFamily("intake_messages", "Records by status", labels=["status"])
        by_reason = GaugeMetricFamily("intake_message_reasons", "Records by reason code", labels=["reason"])
        backlog = GaugeMetricFamily("intake_backlog", "Held records plus messages waiting in the mailbox")
        since_poll = GaugeMetricFamily("intake_seconds_since_last_poll",
                                       "Seconds since the last successful mailbox poll (any daemon)")
        refusals = GaugeMetricFamily("intake_door_refusals", "Messages refused at the door (LMTP/SMTP 552)")
        with self.sessions() as session:
            counts = dict(session.execute(select(Message.status, func.count()).group_by(Message.status)).all())
            reasons: Counter[str] = Counter()
            for (value,) in session.execute(select(Message.reasons).where(Message.status != "accepted")):
                reasons.update(value or [])
            health = session.scalars(select(ServiceHealth)).all()
            door = session.scalar(select(func.count()).select_from(DoorRefusal)) or 0
        for status in ("accepted", "rejected", "quarantined", "held", "duplicate"):
            by_status.add_metric([status], counts.get(status, 0))
        for reason, n in sorted(reasons.items()):
            by_reason.add_metric([reason], n)
        backlog.add_metric([], counts.get("held", 0) + sum(h.backlog or 0 for h in health))
        polls = [h.last_poll_at for h in health if h.last_poll_at is not None]
        if polls:
            since_poll.add_metric([], (dt.datetime.now(dt.UTC) - max(polls)).total_seconds())
        refusals.add_metric([], door)
        yield from (by_status, by_reason, backlog, since_poll, refusals)


def metrics_settings(raw_config: dict[str, Any]) -> tuple[bool, str, int]:
    """The `[metrics]` table (enabled, address, port), strict: unknown keys and wrong types are one line."""
    from daemon.config import Section

    section = Section(raw_config.get("metrics"), "metrics")
    section.reject_unknown(("enabled", "address", "port"))
    return (section.get("enabled", bool, False), section.get("address", str, "127.0.0.1"),
            section.port("port", 9464))


def start_metrics(raw_config: dict[str, Any], sessions: sessionmaker[Session]) -> Any | None:
    """Serve /metrics on 127.0.0.1 when `[metrics] enabled = true`; returns the server (or None)."""
    enabled, address, port = metrics_settings(raw_config)
    if not enabled:
        return None
    REGISTRY.register(DatabaseCollector(sessions))
    server, _thread = start_http_server(port, addr=address, registry=REGISTRY)
    return server
