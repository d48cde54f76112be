"""structlog JSON logs that cannot carry personal data (R12).

Logs carry record ids, hashes, sizes, statuses, reason codes and timings only. The last processor
keeps an allowlist of keys and drops everything else, so a careless `log.info(..., subject=...)`
is cut before it reaches the journal; string values are also truncated.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

ALLOWED_KEYS = frozenset({
    "event", "level", "timestamp", "logger",
    "record", "records", "sha", "size", "status", "reasons", "flags", "stage", "duration_ms",
    "source", "action", "attempts", "error", "count", "counts", "kinds", "verdicts", "signature",
    "uid", "uidvalidity", "folder", "backoff_s", "pending", "in_flight", "channel", "category",
    "alert", "revision", "path_kind", "detail", "worker", "port", "component",
    "listener", "reply", "recipients", "at",
    "rss_kb", "state", "imap_bytes",
    "error_class", "exitcode", "stderr_bytes", "format", "budget_s", "limit",
    # timings of a look for new mail during a pass (daemon/sources/imap/sync.py), numbers only
    "since_last_look_ms", "search_ms", "claim_ms", "wait_ms", "fetch_ms",
})
_MAX_STR = 200


def _allowlist(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in event.items():
        if key not in ALLOWED_KEYS:
            continue
        if isinstance(value, str) and len(value) > _MAX_STR:
            value = value[:_MAX_STR]
        clean[key] = value
    return clean


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _allowlist,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries' own loggers (oletools, alembic …) may print file names or content: keep them quiet.
    logging.basicConfig(level=logging.WARNING, stream=stream or sys.stderr, format="%(name)s %(levelname)s %(message)s")
    for noisy in ("olevba", "oletools", "msoffcrypto", "alembic", "mailparser"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)


def get_logger(component: str) -> Any:
    # Lazy: the proxy picks up the configuration in force when it logs, not at import time.
    return structlog.get_logger(component=component)
