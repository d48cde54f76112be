"""出力: the `intake export` tables as downloads: public (R11, anyone signed in) and internal (with names
and contacts, reviewers). The same functions as the CLI (daemon/staff/export.py, stats.py) make them."""

from __future__ import annotations

import io

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from daemon import jst
from daemon.staff import export as ex
from daemon.staff.groups import DEFAULT_NGRAM, DEFAULT_SIMILARITY
from daemon.staff.query import Filters
from daemon.staff.stats import compute
from daemon.store.users import REVIEWER, VIEWER
from daemon.web.disposition import content_disposition
from daemon.web.render import need, page

KINDS = {"public": ("公開用", VIEWER), "internal": ("内部用（個人情報を含む）", REVIEWER)}
FORMATS = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "csv": "text/csv"}


def index(request: Request) -> Response:
    return page(request, "exports.html", kinds=KINDS)


def _similarity(raw: dict) -> tuple[float, int]:  # type: ignore[type-arg]
    staff = raw.get("staff") if isinstance(raw.get("staff"), dict) else {}
    sim = staff.get("form_letter_similarity", DEFAULT_SIMILARITY)
    ngram = staff.get("form_letter_ngram", DEFAULT_NGRAM)
    return float(sim), int(ngram)


def download(request: Request) -> Response:
    which, fmt = request.path_params["which"], request.path_params["fmt"]
    if which not in KINDS or fmt not in FORMATS:
        raise HTTPException(404, "その出力はありません。")
    label, role = KINDS[which]
    need(request, role)
    ctx = request.app.state.ctx
    public = which == "public"
    sim, ngram = _similarity(ctx.config.raw)
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
