"""出力: the `intake export` tables as downloads: public (R11, anyone signed in) and internal (with names
and contacts, reviewers); and the result document 「提出された意見及び考え方」 (.docx, .xlsx), which is always the
public form and so open to anyone signed in. The same functions as the CLI (daemon/staff/export.py, stats.py,
results.py, result_docs.py) make them."""

from __future__ import annotations

import io

from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from daemon import jst
from daemon.staff import export as ex
from daemon.staff import result_docs, results
from daemon.staff.query import Filters
from daemon.staff.stats import compute
from daemon.store.users import REVIEWER, VIEWER
from daemon.web.disposition import content_disposition
from daemon.web.render import need, page
from daemon.web.review import similarity, sync_lock

KINDS = {"public": ("公開用", VIEWER), "internal": ("内部用（個人情報を含む）", REVIEWER)}
FORMATS = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "csv": "text/csv"}
RESULT = "result"  # /exports/result.docx|xlsx
RESULT_NAME = "提出された意見及び考え方"
RESULT_FORMATS = {"docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                  "xlsx": FORMATS["xlsx"]}


def index(request: Request) -> Response:
    return page(request, "exports.html", kinds=KINDS)


async def download(request: Request) -> Response:
    which, fmt = request.path_params["which"], request.path_params["fmt"]
    if which == RESULT and fmt in RESULT_FORMATS:
        need(request, VIEWER)
        return await run_in_threadpool(_result, request, fmt)
    if which not in KINDS or fmt not in FORMATS:
        raise HTTPException(404, "その出力はありません。")
    label, role = KINDS[which]
    need(request, role)
    return await run_in_threadpool(_table, request, which, label, fmt)


def _table(request: Request, which: str, label: str, fmt: str) -> Response:
    ctx = request.app.state.ctx
    public = which == "public"
    sim, ngram = similarity(ctx.config.raw)
    corpus = Filters.for_publication()
    with ctx.sessions() as session:
        st = compute(session, ctx.rules, corpus, sim, ngram)
    table = ex.rows(st.items, ex.ExportOptions(public=public, target_labels=dict(ctx.rules.target_labels)))
    if fmt == "xlsx":
        buf = io.BytesIO()
        ex.write_xlsx(buf, table, st, public)
        data = buf.getvalue()
    else:
        data = ex.csv_bytes(table, public=public)
    day = jst.today().isoformat()
    name = f"意見一覧_{label.split('（')[0]}_{day}.{fmt}"
    return Response(data, media_type=FORMATS[fmt],
                    headers={"Content-Disposition": content_disposition(name, f"export-{which}-{day}.{fmt}")})


def _result(request: Request, fmt: str) -> Response:
    """results.build brings the review up to date (new mail gets its row, as 整理 does) and makes the document;
    the sync is recorded as the signed-in reviewer's, or as the intake's for a viewer."""
    ctx = request.app.state.ctx
    user = request.state.user
    sim, ngram = similarity(ctx.config.raw)
    actor = user.name if user.may(REVIEWER) else "intake"
    with ctx.sessions() as session, sync_lock:
        try:
            doc = results.build(session, ctx.rules, actor, sim, ngram)
        except IntegrityError:  # another process synced the same new items first: they have their rows now
            session.rollback()
            doc = results.build(session, ctx.rules, actor, sim, ngram)
    buf = io.BytesIO()
    (result_docs.write_docx if fmt == "docx" else result_docs.write_xlsx)(buf, doc)
    day = jst.today().isoformat()
    return Response(buf.getvalue(), media_type=RESULT_FORMATS[fmt], headers={
        "Content-Disposition": content_disposition(f"{RESULT_NAME}_{day}.{fmt}", f"result-{day}.{fmt}")})
