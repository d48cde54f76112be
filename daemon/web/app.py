"""The Starlette application: its state, the middleware every request passes, and the route table.

Every request, in order: security headers on the answer (CSP without any script, frames denied, no
caching of pages with personal data); the signed session cookie (itsdangerous, via Starlette); the signed-in
user (from the session, or from the trusted proxy's header when it comes from a configured proxy address),
with the idle timeout; every POST's CSRF token; one log line with the route's name, never its URL.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import sessionmaker
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from daemon.config import Config
from daemon.logs import get_logger
from daemon.rules import Rules
from daemon.store.db import make_engine, make_sessionmaker
from daemon.store.raw import RawStore
from daemon.store.users import User
from daemon.web import render
from daemon.web.routes import routes as page_routes
from daemon.web.settings import WebSettings, load_secret

log = get_logger("web")
HERE = Path(__file__).resolve().parent
PUBLIC = ("/login", "/static/", "/healthz")
CSP = ("default-src 'none'; script-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
COOKIE = "intake_session"


@dataclass
class WebContext:
    """What every page needs: config, rules, settings, the database and the raw store (read-only use)."""

    config: Config
    rules: Rules
    settings: WebSettings
    sessions: sessionmaker[Any]
    raw_store: RawStore
    _intake: Any = None
    clock: Callable[[], float] = time.time  # seconds since the epoch, for the idle timeout
    decision_lock: threading.Lock = field(default_factory=threading.Lock)

    def intake(self) -> Any:
        """The pipeline object the staff decisions take (daemon/staff/decisions.py), made once."""
        if self._intake is None:
            from daemon.pipeline import Intake

            intake = Intake.from_config(self.config, self.rules)
            intake.sessions = self.sessions
            self._intake = intake
        return self._intake


def _user_for(ctx: WebContext, request: Request) -> User | None:
    """The signed-in user: the trusted proxy's header (from a configured proxy address only), else the
    session; None when signed out, idle too long, disabled, or the password changed since."""
    with ctx.sessions() as session:
        header = ctx.settings.trusted_user_header
        if header and ctx.settings.proxy_trusted(request.client.host if request.client else None):
            name = request.headers.get(header)
            if name:
                user = session.query(User).filter(User.name == name).one_or_none()
                return user if user is not None and not user.disabled else None
        uid = request.session.get("uid")
        if uid is None:
            return None
        user = session.get(User, uid)
        if user is None or user.disabled or user.session_epoch != request.session.get("ep"):
            return None
        return user


class Guard(BaseHTTPMiddleware):
    """Sign-in, idle timeout, CSRF, security headers and the access log, for every request."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.monotonic()
        ctx: WebContext = request.app.state.ctx
        path = request.url.path
        if "csrf" not in request.session:
            request.session["csrf"] = secrets.token_urlsafe(32)
        public = path.startswith(PUBLIC)
        request.state.user = None
        response: Response
        if request.method == "POST" and not await _csrf_ok(request):
            response = render.error_page(request, 403, "フォームの有効期限が切れたか、正しくない送信です。"
                                        "ページを読み込み直してからやり直してください。")
        elif not public:
            now = ctx.clock()
            seen = request.session.get("seen", 0)
            user = await run_in_threadpool(_user_for, ctx, request)
            if user is not None and request.session.get("uid") and now - seen > ctx.settings.idle_minutes * 60:
                request.session.clear()
                request.session["csrf"] = secrets.token_urlsafe(32)
                request.session["flash"] = "一定時間操作がなかったため、ログアウトしました。"
                user = None
            if user is None:
                response = RedirectResponse("/login", status_code=303)
            else:
                request.session["seen"] = int(now)
                request.state.user = user
                response = await call_next(request)
        else:
            response = await call_next(request)
        _secure_headers(response, path)
        route = request.scope.get("route")
        log.info("web_request", action=request.method, path_kind=getattr(route, "name", None) or "other",
                 status=response.status_code, duration_ms=round((time.monotonic() - started) * 1000, 1))
        return response


async def _csrf_ok(request: Request) -> bool:
    token = request.headers.get("x-csrf-token")
    if token is None:
        ctype = request.headers.get("content-type", "")
        if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            request.scope["intake.form"] = form  # the endpoint's Request is another object: hand it over
            value = form.get("csrf_token")
            token = value if isinstance(value, str) else None
    expected = request.session.get("csrf")
    return bool(token and expected and hmac.compare_digest(str(token), str(expected)))


def _secure_headers(response: Response, path: str) -> None:
    h = response.headers
    h["Content-Security-Policy"] = CSP
    h["X-Frame-Options"] = "DENY"
    h["X-Content-Type-Options"] = "nosniff"
    h["Referrer-Policy"] = "no-referrer"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    if not path.startswith("/static/"):
        h["Cache-Control"] = "no-store"


def create_app(config: Config, rules: Rules, settings: WebSettings | None = None,
               sessions: sessionmaker[Any] | None = None) -> Starlette:
    settings = settings or WebSettings.from_config(config)
    secret = load_secret(settings)
    if sessions is None:
        sessions = make_sessionmaker(make_engine(config.database_url))
    ctx = WebContext(config=config, rules=rules, settings=settings, sessions=sessions,
                     raw_store=RawStore(config.raw_dir, config.quarantine_dir))
    table = [
        *page_routes(),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(SessionMiddleware, secret_key=secret.decode(), session_cookie=COOKIE,
                   max_age=settings.idle_minutes * 60, same_site="lax", https_only=settings.cookie_secure),
        Middleware(Guard),
    ]
    app = Starlette(routes=table, middleware=middleware, exception_handlers=render.exception_handlers())
    app.state.ctx = ctx
    return app


__all__ = ["COOKIE", "CSP", "Route", "WebContext", "create_app"]
