"""進捗: how far the answers are, per section of the outline: rows and comment items per state (未着手/検討中/確定)
and totals, with the 者/件 line of the result document. Counts only: nothing personal is on this page.

The review is brought up to date first (review.sync, as 整理 does), so that new mail is counted as 未着手 rather
than left out."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from daemon.staff import review as rv
from daemon.store.review import STATES
from daemon.web.render import page
from daemon.web.review import actor_of, bring_up_to_date, numbering


@dataclass
class Line:
    id: str
    title: str
    rows: Counter[str] = field(default_factory=Counter)  # rows (groups) per state
    items: Counter[str] = field(default_factory=Counter)  # comment items per state of their row

    @property
    def row_total(self) -> int:
        return sum(self.rows.values())

    @property
    def item_total(self) -> int:
        return sum(self.items.values())


def progress(request: Request) -> Response:
    ctx = request.app.state.ctx
    with ctx.sessions() as session:
        bring_up_to_date(session, ctx, actor_of(request))
        board = rv.board(session, ctx.rules)
        _numbers, doc = numbering(board, ctx.rules)
    lines: list[Line] = []
    total = Line("", "合計")
    for sid, title, rows in board.sections:
        line = Line(sid, title)
        for r in rows:
            line.rows[r.group.state] += 1
            line.items[r.group.state] += len(r.members)
        total.rows.update(line.rows)
        total.items.update(line.items)
        lines.append(line)
    return page(request, "progress.html", lines=lines, total=total, STATES=STATES, counts_line=doc.counts_line)
