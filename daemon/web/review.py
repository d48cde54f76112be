"""整理: the rows of the result document by section, one row's page (its comments, the answer editor, move, merge,
split, its history), and the POSTs that change them.

Every operation is daemon/staff/review.py's (the same as the CLI's and the document's); this module only reads
the form, calls it with the signed-in user as the actor, commits, and shows the outcome. A refused operation
(ReviewError) shows the row again with the layer's one-line Japanese message (409); a refused answer save
(StaleAnswer: someone saved since the form was opened) shows what is stored now beside the user's own unsaved
text, so nothing typed is lost and nothing stored is overwritten without the user having seen it.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from daemon.rules import Rules
from daemon.staff import results
from daemon.staff import review as rv
from daemon.staff.groups import DEFAULT_NGRAM, DEFAULT_SIMILARITY
from daemon.staff.result_model import ResultDocument
from daemon.store.review import REVISED, STATES, ReviewEvent, ReviewItem
from daemon.store.users import REVIEWER
from daemon.web.render import form_of, need, page

EXCERPT_CHARS = 90
NAMES_SHOWN = 3  # submitters named on the 整理 list; the rest as 「ほかN者」 (the row page lists them all)
sync_lock = threading.Lock()  # one sync at a time from this process: two would add the same items


def similarity(raw: dict) -> tuple[float, int]:  # type: ignore[type-arg]
    """[staff] form_letter_similarity and form_letter_ngram, as the CLI reads them: how a sync groups new items."""
    staff = raw.get("staff") if isinstance(raw.get("staff"), dict) else {}
    sim = staff.get("form_letter_similarity", DEFAULT_SIMILARITY)
    ngram = staff.get("form_letter_ngram", DEFAULT_NGRAM)
    return float(sim), int(ngram)


def actor_of(request: Request) -> str:
    """Who a sync is recorded as: the signed-in reviewer, else the intake itself (a viewer changes nothing)."""
    user = request.state.user
    return str(user.name) if user.may(REVIEWER) else rv.SYSTEM


def bring_up_to_date(session: Session, ctx: Any, actor: str) -> None:
    """review.sync and commit, so that mail accepted since the last look has its row."""
    sim, ngram = similarity(ctx.config.raw)
    with sync_lock:
        try:
            rv.sync(session, ctx.rules, actor, sim, ngram)
            session.commit()
        except IntegrityError:  # another process (intake export, a second web worker) added the same items first
            session.rollback()


def numbering(board: rv.Board, rules: Rules) -> tuple[dict[int, str], ResultDocument]:
    """Each row's number-to-be (意見1-2) as results.document numbers it, and that document."""
    doc = results.document(board, rules)
    filled = [rows for _sid, _title, rows in board.sections if rows]
    numbers: dict[int, str] = {}
    for rows, section in zip(filled, doc.sections, strict=True):
        for row, out in zip(rows, section.rows, strict=True):
            numbers[row.group.id] = out.number
    return numbers, doc


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "…"


def staff_names(row: rv.Row) -> list[str]:
    """The row's submitters as staff see them, each once, in order of arrival."""
    out: list[str] = []
    for m in row.members:
        name = m.staff_label or "（名前なし）"
        if name not in out:
            out.append(name)
    return out


# -- 整理 ------------------------------------------------------------------------------------------------
@dataclass
class ListRow:
    id: int
    number: str
    excerpt: str
    count: int
    names: list[str]
    more: int
    state: str
    revised: str | None


@dataclass
class ListSection:
    id: str
    title: str
    rows: list[ListRow] = field(default_factory=list)


def index(request: Request) -> Response:
    ctx = request.app.state.ctx
    wanted = request.query_params.get("section") or None
    state = request.query_params.get("state") or None
    sections_known = dict(ctx.rules.outline.order)
    if wanted not in sections_known:
        wanted = None
    if state not in STATES:
        state = None
    with ctx.sessions() as session:
        bring_up_to_date(session, ctx, actor_of(request))
        board = rv.board(session, ctx.rules)
        numbers, doc = numbering(board, ctx.rules)
        shown: list[ListSection] = []
        counts: list[tuple[str, str, int]] = []
        for sid, title, rows in board.sections:
            counts.append((sid, title, len(rows)))
            if wanted and sid != wanted:
                continue
            out = ListSection(sid, title)
            for r in rows:
                if state and r.group.state != state:
                    continue
                names = staff_names(r)
                out.rows.append(ListRow(id=r.group.id, number=numbers[r.group.id], excerpt=excerpt(r.first.item.text),
                                        count=len(r.members), names=names[:NAMES_SHOWN],
                                        more=max(0, len(names) - NAMES_SHOWN), state=r.group.state,
                                        revised=r.group.revised))
            shown.append(out)
    return page(request, "review.html", sections=shown, counts=counts, wanted=wanted, state=state, STATES=STATES,
                counts_line=doc.counts_line, total_rows=sum(n for _s, _t, n in counts))


# -- one row ---------------------------------------------------------------------------------------------
@dataclass
class Draft:
    """What the answer editor shows: the stored answer, or the user's own text after a refused save."""

    answer: str
    revised: str | None
    state: str
    version: int


@dataclass
class Stored:
    """The answer as stored when a save was refused (StaleAnswer), read before the session is rolled back."""

    answer: str
    revised: str | None
    state: str
    answered_by: str | None
    answered_at: Any


def describe(e: ReviewEvent, titles: dict[str, str]) -> str:
    """One line of a row's history, in Japanese."""
    d = e.detail or {}
    if e.action == "move":
        before, after = str(d.get("before")), str(d.get("after"))
        return f"「{titles.get(before, before)}」から「{titles.get(after, after)}」へ移動"
    if e.action == "merge" and "into" in d:
        return f"この行の意見 {d.get('items', 0)} 件を 行 {d['into']} にまとめた"
    if e.action == "merge":
        sources = "、".join(f"行 {s}" for s in d.get("sources") or [])
        return f"{sources} の意見 {d.get('received', 0)} 件をこの行にまとめた"
    if e.action == "split" and "from_row" in d:
        return f"行 {d['from_row']} から受付番号 {d.get('message_pk') or e.message_pk} の意見を分けてこの行にした"
    if e.action == "split":
        return f"受付番号 {d.get('message_pk') or e.message_pk} の意見を分けて 行 {d.get('to')} にした"
    if e.action == "answer":
        return (f"考え方を保存（第{d.get('version')}版、修正の有無: {d.get('revised') or '未選択'}、"
                f"状態: {STATES.get(str(d.get('state')), d.get('state'))}）")
    return str(e.action)


def _row_page(request: Request, session: Session, gid: int, status_code: int = 200, error: str | None = None,
              draft: Draft | None = None, stored: Stored | None = None) -> Response:
    ctx = request.app.state.ctx
    board = rv.board(session, ctx.rules)
    row = board.row(gid)
    if row is None:
        return _gone(request, session, gid)
    numbers, _doc = numbering(board, ctx.rules)
    titles = dict(ctx.rules.outline.order)
    g = row.group
    events = rv.history(session, gid)
    history = [(e, describe(e, titles), (e.detail or {}).get("answer") if e.action in ("answer", "merge") else None)
               for e in events]
    return page(request, "review_row.html", status_code=status_code, row=row, number=numbers.get(gid, ""),
                section_title=titles.get(g.section, g.section), sections=ctx.rules.outline.order, history=history,
                draft=draft or Draft(g.answer or "", g.revised, g.state, g.version), stored=stored, error=error,
                STATES=STATES, REVISED=REVISED, target_labels=dict(ctx.rules.target_labels),
                names=staff_names(row))


def _gone(request: Request, session: Session, gid: int) -> Response:
    """A row no longer on the board: merged into another (go there), or all its mail no longer counts."""
    merged = [e for e in rv.history(session, gid) if e.action == "merge" and "into" in (e.detail or {})]
    if merged:
        into = int(merged[-1].detail["into"])
        request.session["flash"] = f"行 {gid} は 行 {into} にまとめられています。"
        return RedirectResponse(f"/review/rows/{into}", status_code=303)
    raise HTTPException(404, f"整理の行 {gid} はありません（意見がまとめられたか、対象外になりました）。")


def row(request: Request) -> Response:
    ctx = request.app.state.ctx
    with ctx.sessions() as session:
        return _row_page(request, session, request.path_params["id"])


# -- the POSTs -------------------------------------------------------------------------------------------
def _text(data: Any, name: str, limit: int) -> str:
    return str(data.get(name) or "")[:limit]


def _done(request: Request, gid: int, message: str) -> Response:
    request.session["flash"] = message
    return RedirectResponse(f"/review/rows/{gid}", status_code=303)


async def answer(request: Request) -> Response:
    need(request, REVIEWER)
    data = await form_of(request)
    gid = int(request.path_params["id"])
    revised = _text(data, "revised", 4) or None
    draft = Draft(_text(data, "answer", rv.MAX_ANSWER_CHARS + 1000), revised, _text(data, "state", 16), -1)
    try:
        draft.version = int(_text(data, "version", 20))
    except ValueError:
        draft.version = -1  # never a stored version: the save is refused with the current answer shown
    return await run_in_threadpool(_save_answer, request, gid, draft)


def _save_answer(request: Request, gid: int, draft: Draft) -> Response:
    ctx = request.app.state.ctx
    user = request.state.user.name
    with ctx.sessions() as session:
        try:
            version = rv.save_answer(session, gid, draft.answer, draft.revised, draft.state, draft.version, user)
            session.commit()
        except rv.StaleAnswer as exc:
            cur = exc.current
            stored = Stored(cur.answer or "", cur.revised, cur.state, cur.answered_by, cur.answered_at)
            draft.version = cur.version  # a second save, after reading what is stored, is the user's choice
            session.rollback()
            return _row_page(request, session, gid, 409, str(exc), draft, stored)
        except rv.ReviewError as exc:
            session.rollback()
            return _row_page(request, session, gid, 409, str(exc), draft)
    return _done(request, gid, f"考え方を保存しました（第{version}版）。")


async def move(request: Request) -> Response:
    need(request, REVIEWER)
    data = await form_of(request)
    return await run_in_threadpool(_move, request, int(request.path_params["id"]), _text(data, "section", 80))


def _move(request: Request, gid: int, section: str) -> Response:
    ctx = request.app.state.ctx
    with ctx.sessions() as session:
        try:
            rv.move(session, ctx.rules, gid, section, request.state.user.name)
            session.commit()
        except rv.ReviewError as exc:
            session.rollback()
            return _row_page(request, session, gid, 409, str(exc))
    return _done(request, gid, f"「{ctx.rules.outline.title_of(section)}」へ移動しました。")


_NUMBER = re.compile(r"^(?:意見)?(\d+)-(\d+)$")


def _row_id(session: Session, rules: Rules, given: str) -> int:
    """The other row of a merge, by its row number (行 12 → 12) or its number-to-be (意見1-3)."""
    text = unicodedata.normalize("NFKC", given).replace(" ", "").removeprefix("行")
    if text.isdigit():
        return int(text)
    m = _NUMBER.match(text.replace("ー", "-").replace("−", "-"))
    if m:
        numbers, _doc = numbering(rv.board(session, rules), rules)
        wanted = f"意見{int(m.group(1))}-{int(m.group(2))}"
        for gid, number in numbers.items():
            if number == wanted:
                return gid
        raise rv.ReviewError(f"{wanted} の行はありません。")
    raise rv.ReviewError("まとめる行を、行の番号（例: 12）か意見番号（例: 意見1-3）で入力してください。")


async def merge(request: Request) -> Response:
    need(request, REVIEWER)
    data = await form_of(request)
    return await run_in_threadpool(_merge, request, int(request.path_params["id"]), _text(data, "other", 40))


def _merge(request: Request, gid: int, given: str) -> Response:
    ctx = request.app.state.ctx
    with ctx.sessions() as session:
        try:
            other = _row_id(session, ctx.rules, given)
            if other == gid:
                raise rv.ReviewError("同じ行どうしはまとめられません。")
            moved = rv.merge(session, gid, [other], request.state.user.name)
            if not moved:
                raise rv.ReviewError(f"行 {other} にはまとめる意見がありません（すでにまとめられた行です）。")
            session.commit()
        except rv.ReviewError as exc:
            session.rollback()
            return _row_page(request, session, gid, 409, str(exc))
    return _done(request, gid, f"行 {other} の意見 {moved} 件をこの行にまとめました（同旨）。")


async def split(request: Request) -> Response:
    need(request, REVIEWER)
    await form_of(request)
    return await run_in_threadpool(_split, request, int(request.path_params["id"]))


def _split(request: Request, item_id: int) -> Response:
    ctx = request.app.state.ctx
    with ctx.sessions() as session:
        item = session.get(ReviewItem, item_id)
        if item is None:
            raise HTTPException(404, f"整理の意見 {item_id} はありません。")
        gid = item.group_id
        try:
            new = rv.split(session, item_id, request.state.user.name)
            session.commit()
        except rv.ReviewError as exc:
            session.rollback()
            return _row_page(request, session, gid, 409, str(exc))
    return _done(request, gid, f"意見を分けて、新しい行（行 {new}）にしました。")
