"""受付詳細: the comment items first, then the submitter, the attachments with their verdicts in words, the
event history; downloads of allowed attachments (any signed-in user) and of the raw .eml (reviewers)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from daemon.staff.records import NotAvailable, attachment_bytes, downloadable, load, raw_message
from daemon.store.users import REVIEWER
from daemon.web.disposition import content_disposition
from daemon.web.render import error_page, need, page


def _record(request: Request):  # type: ignore[no-untyped-def]
    ctx = request.app.state.ctx
    with ctx.sessions() as session:
        msg = load(session, request.path_params["id"])
        if msg is None:
            raise HTTPException(404, "その受付番号の記録はありません。")
        session.expunge(msg)
    return msg


def detail(request: Request) -> Response:
    msg = _record(request)
    result = msg.result or {}
    comments = [c for c in result.get("comments") or [] if isinstance(c, dict)]
    submitter = result.get("submitter") if isinstance(result.get("submitter"), dict) else {}
    return page(request, "record.html", msg=msg, comments=comments, submitter=submitter,
                texts=[t for t in result.get("texts") or [] if isinstance(t, dict)],
                downloadable={a.position: downloadable(msg, a) for a in msg.attachments},
                target_labels=dict(request.app.state.ctx.rules.target_labels))


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
