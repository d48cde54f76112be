"""判断: release (受付にする), reject (受付不可にする) and retry (再試行), for reviewers. A note is required;
the first POST shows what will happen and asks for confirmation, the second one decides. The decision is
made by daemon/staff/decisions.py, as `intake release/reject/retry` make it, with the signed-in user as the
event's actor; the record page then shows the result and the new event."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from daemon.staff import decisions
from daemon.staff.explain import STATUS_LABELS
from daemon.store.users import REVIEWER
from daemon.web.record import _record
from daemon.web.render import form_of, need, page

ACTIONS: dict[str, tuple[str, Callable[..., Any], tuple[str, ...], str]] = {
    # action: (label, operation, statuses it applies to, what happens)
    "release": ("受付にする", decisions.release, ("rejected",),
                "受付不可のメールを受け付けます。受け付けない形式だった添付ファイルのうち読めるものは文字を読み取ります。"),
    "reject": ("受付不可にする", decisions.reject, ("accepted", "held", "rejected"),
               "このメールを受付不可にします（迷惑メールなど）。元のメールは削除されません。"),
    "retry": ("再試行", decisions.retry, ("held", "rejected"),
              "保存されている元のメールで、検査と読み取りをもう一度行います。"),
}


def _action(request: Request) -> tuple[str, Callable[..., Any], tuple[str, ...], str]:
    need(request, REVIEWER)
    name = request.path_params["action"]
    if name not in ACTIONS:
        raise HTTPException(404, "その操作はありません。")
    return ACTIONS[name]


def form(request: Request) -> Response:
    label, _op, statuses, what = _action(request)
    msg = _record(request)
    return page(request, "decide.html", msg=msg, action=request.path_params["action"], label=label, what=what,
                allowed=msg.status in statuses, note="", confirm=False, error=None)


async def post(request: Request) -> Response:
    label, op, statuses, what = _action(request)
    msg = _record(request)
    action = request.path_params["action"]
    data = await form_of(request)
    note = str(data.get("note") or "").strip()[:2000]
    values = dict(msg=msg, action=action, label=label, what=what, allowed=msg.status in statuses, note=note)
    if not note:
        return page(request, "decide.html", status_code=400, confirm=False,
                    error="理由（メモ）を入力してください。判断の記録に残ります。", **values)
    if data.get("confirm") != "yes":
        return page(request, "decide.html", confirm=True, error=None, **values)
    ctx = request.app.state.ctx
    user = request.state.user

    def run() -> Any:
        with ctx.decision_lock:  # one decision at a time from this process, as one CLI run would
            return op(ctx.intake(), msg.id, user.name, note)

    try:
        outcome = await run_in_threadpool(run)
    except decisions.DecisionError as exc:
        return page(request, "decide.html", status_code=409, confirm=False,
                    error=f"この判断はできません: {exc}", **values)
    except Exception as exc:  # the database, the raw store or clamd failed: say so, decide nothing more
        return page(request, "decide.html", status_code=503, confirm=False,
                    error=f"判断を記録できませんでした（{exc.__class__.__name__}）。時間をおいてやり直してください。",
                    **values)
    request.session["flash"] = (f"受付番号 {outcome.record_id}: {label}を行いました"
                                f"（{STATUS_LABELS.get(outcome.before, outcome.before)} → "
                                f"{STATUS_LABELS.get(outcome.after, outcome.after)}）。")
    return RedirectResponse(f"/records/{msg.id}#history", status_code=303)
