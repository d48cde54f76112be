"""`intake run`: the asyncio service around the synchronous pipeline (run.py), its systemd side (systemd.py),
its `[service]` options (options.py) and its health row (health.py)."""

from daemon.service.health import signature_age, write_health
from daemon.service.options import ServiceOptions
from daemon.service.run import Service, ServiceError, worker_threads
from daemon.service.systemd import sd_notify, watchdog_interval

__all__ = ["Service", "ServiceError", "ServiceOptions", "sd_notify", "signature_age", "watchdog_interval",
           "worker_threads", "write_health"]
