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

_TALLY_SECONDS = 60  # the 者/件 line reads every accepted record's submitter: refreshed at most once a minute
_WAIT_SECONDS = 2.0  # a page waits this long for a first count, then says it is being counted
_cache: dict[int, tuple[float, Any]] = {}
_running: dict[int, threading.Thread] = {}
_lock = threading.Lock()


def _count(ctx: Any) -> None:
    try:
        with ctx.sessions() as session:
            value = board.submitters(session)
        with _lock:
            _cache[id(ctx)] = (time.monotonic(), value)
    finally:
        with _lock:
            _running.pop(id(ctx), None)


def _tally(ctx: Any) -> Any:
    """The last 者/件 count (None while the first one runs): counted in a background thread, so a page on
    100,000 records never waits for it (bench/web.py, BENCHMARKS.md)."""
    with _lock:
        hit = _cache.get(id(ctx))
        fresh = hit is not None and time.monotonic() - hit[0] < _TALLY_SECONDS
        worker = _running.get(id(ctx))
        if not fresh and worker is None:
            worker = threading.Thread(target=_count, args=(ctx,), name="intake-web-tally", daemon=True)
            _running[id(ctx)] = worker
            worker.start()
    if hit is None and worker is not None:
        worker.join(_WAIT_SECONDS)
        with _lock:
            hit = _cache.get(id(ctx))
    return hit[1] if hit else None


def wait_for_tally(timeout: float | None = None) -> None:
    """Until no 者/件 count runs: it shares the process (and its GIL) with the requests, so `python -m bench.web`
    times the pages apart from it."""
    with _lock:
        workers = list(_running.values())
    for worker in workers:
        worker.join(timeout)


def _clamd(ctx: Any) -> dict[str, Any]:
    """Reachable when any clamd of `[scan] clamd` answers (the others take the load); `down` lists the URLs
    of those that do not, for a pool of several."""
    states = Scanner(ctx.config.scan.clamd, timeout=2).probe()
    version = next((s.version for s in states if s.version is not None), None)
    age = signature_age(version)
    return {"reachable": version is not None, "version": version,
            "age_hours": round(age.total_seconds() / 3600, 1) if age is not None else None,
            "down": [s.url for s in states if s.version is None], "count": len(states)}


def dashboard(request: Request) -> Response:
    ctx = request.app.state.ctx
    with ctx.sessions() as session:
        s = board.summary(session, ctx.rules)
    peak = max((n for _, n in s.per_day), default=0)
    return page(request, "dashboard.html", s=s, tally=_tally(ctx), clamd=_clamd(ctx), peak=peak or 1)
