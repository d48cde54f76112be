"""ダッシュボード: today's arrivals and each day of the window, 者/件, counts by status, what needs a person now,
the daemons' health (last poll, backlog, clamd and its signatures' age) and the days left."""

from __future__ import annotations

import threading
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from daemon.scanner import Scanner
from daemon.service.health import signature_age
from daemon.staff import dashboard as board
from daemon.web.render import page

_TALLY_SECONDS = 60  # the 者/件 line reads every accepted record: computed at most once a minute
_cache: dict[int, tuple[float, Any]] = {}
_lock = threading.Lock()


def _tally(ctx: Any) -> Any:
    with _lock:
        hit = _cache.get(id(ctx))
        if hit and time.monotonic() - hit[0] < _TALLY_SECONDS:
            return hit[1]
    with ctx.sessions() as session:
        value = board.submitters(session)
    with _lock:
        _cache[id(ctx)] = (time.monotonic(), value)
    return value


def _clamd(ctx: Any) -> dict[str, Any]:
    scanner = Scanner(ctx.config.scan.clamd, timeout=2)
    reachable = scanner.ping()
    version = scanner.version() if reachable else None
    age = signature_age(version)
    return {"reachable": reachable, "version": version,
            "age_hours": round(age.total_seconds() / 3600, 1) if age is not None else None}


def dashboard(request: Request) -> Response:
    ctx = request.app.state.ctx
    with ctx.sessions() as session:
        s = board.summary(session, ctx.rules)
    peak = max((n for _, n in s.per_day), default=0)
    return page(request, "dashboard.html", s=s, tally=_tally(ctx), clamd=_clamd(ctx), peak=peak or 1)
