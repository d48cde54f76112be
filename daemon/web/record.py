"""受付詳細: the comment items first, then the submitter, the attachments with their verdicts in words, the
event history; downloads of allowed attachments (any signed-in user) and of the raw .eml (reviewers).

整理 on this page: the rows of the review that hold this record's items, whether it was replaced by a later
record from the same submitter (a corrected resend) or replaces one, and for reviewers the form
「差し替え（訂正版の再送）」 and its undo, both done by daemon/staff/review.py (supersede, restore)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from daemon.staff import review as rv
from daemon.staff.records import NotAvailable, attachment_bytes, downloadable, load, raw_message
from daemon.store.review import ReviewItem, Supersession
from daemon.store.users import REVIEWER
from daemon.web.disposition import content_disposition
from daemon.web.render import error_page, form_of, need, page

# The record events that 整理 writes, named here until daemon/staff/explain.py names them.
REVIEW_ACTIONS = {"superseded": "差し替え", "unsuperseded": "差し替えの取り消し"}


def _record(request: Request):  # type: ignore[no-untyped-def]
    ctx = request.app.state.ctx
    with ctx.sessions() as session:
        msg = load(session, request.path_params["id"])
        if msg is None:
            raise HTTPException(404, "その受付番号の記録はありません。")
        session.expunge(msg)
    return msg


def _review_state(request: Request, record_id: int) -> dict[str, Any]:
    """What 整理 knows of this record: its rows, and the supersession either way."""
    with request.app.state.ctx.sessions() as session:
        rows = sorted(set(session.scalars(select(ReviewItem.group_id).where(ReviewItem.message_pk == record_id))))
        sup = session.get(Supersession, record_id)
        superseded = ({"by": sup.replaced_by, "actor": sup.actor, "at": sup.at, "note": sup.note}
                      if sup is not None else None)
        replaces = list(session.scalars(select(Supersession.message_pk).where(Supersession.replaced_by == record_id)
                                        .order_by(Supersession.message_pk)))
    return {"review_rows": rows, "superseded": superseded, "replaces": replaces}


def _detail_page(request: Request, status_code: int = 200, error: str | None = None,
                 form: dict[str, str] | None = None) -> Response:
    msg = _record(request)
    result = msg.result or {}
    comments = [c for c in result.get("comments") or [] if isinstance(c, dict)]
    submitter = result.get("submitter") if isinstance(result.get("submitter"), dict) else {}
    return page(request, "record.html", status_code=status_code, msg=msg, comments=comments, submitter=submitter,
                texts=[t for t in result.get("texts") or [] if isinstance(t, dict)],
                downloadable={a.position: downloadable(msg, a) for a in msg.attachments},
                target_labels=dict(request.app.state.ctx.rules.target_labels), review_error=error,
                review_form=form or {}, REVIEW_ACTIONS=REVIEW_ACTIONS, **_review_state(request, msg.id))


def detail(request: Request) -> Response:
    return _detail_page(request)


async def supersede(request: Request) -> Response:
    """差し替え: this record is replaced by `later` (the corrected resend); it then counts nowhere."""
    need(request, REVIEWER)
    data = await form_of(request)
    form = {"later": str(data.get("later") or "").strip()[:20], "note": str(data.get("note") or "").strip()[:2000]}
    return await run_in_threadpool(_change, request, "supersede", form)


async def restore(request: Request) -> Response:
    """差し替えの取り消し: the record counts again."""
    need(request, REVIEWER)
    data = await form_of(request)
    return await run_in_threadpool(_change, request, "restore", {"note": str(data.get("note") or "").strip()[:2000]})


def _change(request: Request, action: str, form: dict[str, str]) -> Response:
    record_id = int(request.path_params["id"])
    user = request.state.user.name
    with request.app.state.ctx.sessions() as session:
        try:
            if action == "supersede":
                later = form["later"].removeprefix("受付番号").strip()
                if not later.isdigit():
                    raise rv.ReviewError("差し替え先の受付番号を数字で入力してください。")
                rv.supersede(session, record_id, int(later), user, form["note"])
                flash = (f"受付番号 {record_id} を受付番号 {later} で差し替えました。"
                         "この記録は数えられず、出力されません。")
            else:
                rv.restore(session, record_id, user, form["note"])
                flash = f"受付番号 {record_id} の差し替えを取り消しました。この記録はふたたび数えられます。"
            session.commit()
        except rv.ReviewError as exc:
            session.rollback()
            return _detail_page(request, 409, str(exc), form)
    request.session["flash"] = flash
    return RedirectResponse(f"/records/{record_id}#review", status_code=303)


def _download(data: bytes, name: str | None, fallback: str, mime: str) -> Response:
    return Response(data, media_type=mime, headers={
        "Content-Disposition": content_disposition(name, fallback),
        "X-Content-Type-Options": "nosniff",
    })


def attachment(request: Request) -> Response:
    msg = _record(request)
    att = next((a for a in msg.attachments if a.position == request.path_params["position"]), None)
    if att is None:
        raise HTTPException(404, "その添付ファイルはありません。")
    try:
        data = attachment_bytes(request.app.state.ctx.raw_store, msg, att)
    except NotAvailable as exc:
        return error_page(request, 403, str(exc))
    # Always a download, never shown in the browser: application/octet-stream whatever the mail declared.
    return _download(data, att.filename, f"attachment-{msg.id}-{att.position}", "application/octet-stream")


def raw(request: Request) -> Response:
    need(request, REVIEWER)
    msg = _record(request)
    try:
        data = raw_message(request.app.state.ctx.raw_store, msg)
    except NotAvailable as exc:
        return error_page(request, 403, str(exc))
    return _download(data, f"受付{msg.id}.eml", f"record-{msg.id}.eml", "message/rfc822")
