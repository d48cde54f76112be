"""受付一覧: the intake log with filters, paging (50 a page, the total shown) and free-text search.

The filters are posted (search words may be names) and kept in the signed session, so the URL carries only
the page number and the order: nothing personal reaches the address bar, the history or the access log.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from daemon.staff import explain
from daemon.staff.records import ListFilters, list_page, split_words
from daemon.web.render import form_of, page

FIELDS = ("status", "reason", "flag", "target", "kind", "since", "until", "q")
CHOICES: dict[str, dict[str, str]] = {
    "status": dict(explain.STATUS_LABELS),
    "reason": {k: v.label for k, v in explain.REASONS.items()},
    "flag": {k: v.label for k, v in explain.FLAGS.items()},
    "target": dict(explain.TARGETS),
    "kind": dict(explain.KINDS),
}


def _date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def filters_of(saved: dict[str, Any]) -> ListFilters:
    """The session's saved form as filters; a value that is not one of the choices is ignored."""
    def pick(name: str) -> str | None:
        value = saved.get(name) or None
        return value if value in CHOICES[name] else None

    return ListFilters(status=pick("status"), reason=pick("reason"), flag=pick("flag"), target=pick("target"),
                       kind=pick("kind"), since=_date(saved.get("since")), until=_date(saved.get("until")),
                       words=split_words(str(saved.get("q") or "")[:200]))


def records(request: Request) -> Response:
    saved = dict(request.session.get("filters") or {})
    try:
        number = int(request.query_params.get("page", "1"))
    except ValueError:
        number = 1
    oldest_first = request.query_params.get("order") == "asc"
    ctx = request.app.state.ctx
    f = filters_of(saved)
    with ctx.sessions() as session:
        result = list_page(session, f, number, newest_first=not oldest_first)
    return page(request, "records.html", result=result, saved=saved, choices=CHOICES, filtered=f.any(),
                order="asc" if oldest_first else "desc")


async def search(request: Request) -> Response:
    form = await form_of(request)
    if form.get("reset"):
        request.session.pop("filters", None)
    else:
        request.session["filters"] = {k: str(form.get(k) or "")[:200] for k in FIELDS if form.get(k)}
    order = "?order=asc" if form.get("order") == "asc" else ""
    return RedirectResponse("/records" + order, status_code=303)
