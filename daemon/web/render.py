"""Rendering a page: the Jinja2 templates (autoescaped: whatever a mail brings stays text), the values every
page shows (user, CSRF token, a one-time message), Japanese labels, and the error pages."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from daemon import jst
from daemon.staff import explain
from daemon.store.users import ADMIN, REVIEWER, VIEWER

HERE = Path(__file__).resolve().parent
ROLE_LABELS = {VIEWER: "閲覧者", REVIEWER: "審査担当", ADMIN: "管理者"}

env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                  trim_blocks=True, lstrip_blocks=True)


def _jst(value: dt.datetime | None, seconds: bool = False) -> str:
    return jst.stamp(value, seconds=seconds)


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("MB", 1024 * 1024), ("KB", 1024)):
        if n >= div:
            return f"{n / div:,.1f} {unit}"
    return f"{n:,} バイト"


env.filters["jst"] = _jst
env.filters["size"] = _size
env.globals.update(explain=explain, STATUS_LABELS=explain.STATUS_LABELS, KINDS=explain.KINDS,
                   TARGETS=explain.TARGETS, ACTIONS=explain.ACTIONS, ROLE_LABELS=ROLE_LABELS,
                   REASONS=explain.REASONS, FLAGS=explain.FLAGS)


def page(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    flash = request.session.pop("flash", None) if "session" in request.scope else None
    user = getattr(request.state, "user", None)
    html = env.get_template(template).render(
        request=request, user=user, csrf=request.session.get("csrf", "") if "session" in request.scope else "",
        flash=flash, **values)
    return HTMLResponse(html, status_code=status_code)


def error_page(request: Request, status_code: int, message: str) -> HTMLResponse:
    return page(request, "error.html", status_code=status_code, message=message, code=status_code)


MESSAGES = {
    403: "この操作を行う権限がありません。",
    404: "ページまたは記録が見つかりません。",
    405: "この方法ではアクセスできません。",
}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_page(request, exc.status_code, exc.detail if exc.detail and not exc.detail.isascii()
                      else MESSAGES.get(exc.status_code, "エラーが発生しました。"))


async def _server_error(request: Request, exc: Exception) -> Response:
    return error_page(request, 500, "エラーが発生しました。時間をおいてやり直し、続く場合は管理者に連絡してください。")


def exception_handlers() -> dict[Any, Any]:
    return {HTTPException: _http_error, Exception: _server_error}


async def form_of(request: Request) -> Any:
    """The posted form: read once by the CSRF check (daemon/web/app.py), then handed to the endpoint."""
    form = request.scope.get("intake.form")
    return form if form is not None else await request.form()


def need(request: Request, role: str) -> None:
    """403 unless the signed-in user has `role` (or a higher one)."""
    user = getattr(request.state, "user", None)
    if user is None or not user.may(role):
        raise HTTPException(403, MESSAGES[403])
