"""The `[service]` table: retry back-off, health and clamd check intervals, the stop timeout, claim leases."""

from __future__ import annotations

from dataclasses import dataclass

from daemon.config import Config, Section


@dataclass(frozen=True)
class ServiceOptions:
    once: bool = False  # drain the mailbox, then stop
    retry_initial: float = 30.0  # held-record retries: first delay, doubled while they stay held
    retry_max: float = 900.0
    health_interval: float = 5.0
    clamd_check_interval: float = 60.0
    stop_timeout: float = 30.0
    lease_seconds: float = 300.0

    @classmethod
    def from_config(cls, config: Config, once: bool = False) -> ServiceOptions:
        section = Section(config.raw.get("service"), "service")
        values = {key: section.number(key, getattr(cls, key), positive=True, what="number of seconds")
                  for key in ("retry_initial", "retry_max", "health_interval", "clamd_check_interval",
                              "stop_timeout", "lease_seconds")}
        return cls(once=once, **values)
