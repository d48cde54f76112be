"""ログイン and ログアウト: a name and password, the lockout, a fresh session (no fixation), the CSRF token."""

from __future__ import annotations

import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from daemon.staff import accounts
from daemon.web.render import form_of, page


def login_form(request: Request) -> Response:
    return page(request, "login.html", error=None, name="")


async def login(request: Request) -> Response:
    form = await form_of(request)
    name = str(form.get("name") or "").strip()
    password = str(form.get("password") or "")
    ctx = request.app.state.ctx

    def check() -> tuple[int | None, int | None, str | None]:
        with ctx.sessions.begin() as session:
            result = accounts.sign_in(session, name, password)
            if result.user is None:
                return None, None, result.error
            return result.user.id, result.user.session_epoch, None

    uid, epoch, error = await run_in_threadpool(check)
    if uid is None:
        return page(request, "login.html", status_code=401, error=error, name=name)
    request.session.clear()  # a new session at sign-in: nothing from before it carries over
    request.session.update(uid=uid, ep=epoch, seen=int(ctx.clock()), csrf=secrets.token_urlsafe(32))
    return RedirectResponse("/", status_code=303)


async def logout(request: Request) -> Response:
    request.session.clear()
    request.session["flash"] = "ログアウトしました。"
    return RedirectResponse("/login", status_code=303)


def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")
