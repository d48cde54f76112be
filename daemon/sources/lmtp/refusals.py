"""Door refusals at the source: every 552 answered at MAIL FROM or after DATA is logged here (a hook tests
can replace); the pipeline counts it and raises its alert (`Intake.refuse_at_door`, daemon/store/refusals.py).
"""

from __future__ import annotations

import datetime as dt

from daemon.logs import get_logger
from daemon.model import TOO_LARGE

log = get_logger("lmtp")


def on_door_refusal(size: int, when: dt.datetime) -> None:
    """Hook for every 552 at the door (size in bytes, time of refusal). The alerting issue raises a
    `rejected` alert from here; for now it is a structured log event. No record id, no personal data."""
    log.warning("door_refusal", size=size, at=when.astimezone(dt.UTC).isoformat(), reasons=[TOO_LARGE])
