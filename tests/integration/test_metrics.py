"""The Prometheus endpoint serves the counts by status and reason, the backlog and stage latencies."""

from __future__ import annotations

import socket
import urllib.request

from daemon import metrics
from daemon.model import Arrival
from daemon.pipeline import Intake
from devkit.clamd import eicar

from mails import mail


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_endpoint_serves_the_counters(intake: Intake) -> None:
    for raw in (mail(body="一"), mail(body="二"), mail(body="三", attachments=[("v.txt", eicar(), "text/plain")]),
                mail(body="四", attachments=[("x.pdf", b"%PDF-1.4\n%%EOF\n", "application/pdf")])):
        intake.process(Arrival(raw=raw, source="ingest"))
    port = free_port()
    server = metrics.start_metrics({"metrics": {"enabled": True, "port": port}}, intake.sessions)
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        server.shutdown()
        for collector in list(metrics.REGISTRY._collector_to_names):
            if isinstance(collector, metrics.DatabaseCollector):
                metrics.REGISTRY.unregister(collector)
    assert 'intake_messages{status="accepted"} 2.0' in body
    assert 'intake_messages{status="quarantined"} 1.0' in body
    assert 'intake_message_reasons{reason="attachment_not_allowed"} 1.0' in body
    assert 'intake_message_reasons{reason="virus"} 1.0' in body
    assert "intake_backlog 0.0" in body
    assert 'intake_stage_seconds_count{stage="scan"}' in body


def test_metrics_are_off_unless_enabled(intake: Intake) -> None:
    assert metrics.start_metrics({}, intake.sessions) is None
