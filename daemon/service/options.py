"""The `[service]` table: retry back-off, health and clamd check intervals, the stop timeout, claim leases, the
orphan sweep. Unknown keys and wrong types are one-line errors naming the key (at `intake check` and at start)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from daemon.config import Config, Section


@dataclass(frozen=True)
class ServiceOptions:
    once: bool = False  # drain the mailbox, then stop
    retry_initial: float = 30.0  # held-record retries: first delay, doubled while they stay held
    retry_max: float = 900.0
    health_interval: float = 5.0
    clamd_check_interval: float = 60.0
    stop_timeout: float = 30.0  # in-flight work gets this long after SIGTERM; then it is abandoned (never acked)
    lease_seconds: float = 300.0
    orphan_grace: float = 3600.0  # a raw file with no record older than this is removed (daemon/store/orphans.py)
    orphan_sweep_interval: float = 3600.0

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "once"]

    @classmethod
    def from_config(cls, config: Config, once: bool = False) -> ServiceOptions:
        section = Section(config.raw.get("service"), "service")
        section.reject_unknown(cls.keys())
        values = {key: section.number(key, getattr(cls, key), positive=True, what="number of seconds")
                  for key in cls.keys()}
        return cls(once=once, **values)
