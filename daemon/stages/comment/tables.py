"""Tables (Word/Excel, or tab-separated lines in plain text): 該当箇所/意見 tables, field cells, vertical forms.

A row whose cells are 該当箇所 and 意見 labels is a header: each row below is one item. Field labels take
the value in the next cell or, for a row of labels, in the row below. A table without a comment header is
read as a vertical form ("label | value" per row) turned into text lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .labels import CLOSES, NEGATIVE_ANSWERS, OPENS, Compiled, row_fields
from .model import CommentItem
from .normalize import label_key, nfkc
from .references import make_item


def cell_texts(row: Sequence[Any]) -> list[str]:
    return ["" if v is None else str(v) for v in row]


def _comment_header(c: Compiled, cells: list[str]) -> dict[str, list[int]] | None:
    cols: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        lab = c.cell_label(cell) if cell.strip() else None
        if lab is not None and lab[0] == "comment":
            if not any(label_key(cells[j]) == label_key(cell) for j in cols.get(lab[1], [])):
                cols.setdefault(lab[1], []).append(i)
    return cols if "location" in cols and "opinion" in cols else None


def table_items(c: Compiled, tables: Sequence[Sequence[Sequence[Any]]]) -> tuple[list[CommentItem], bool]:
    items: list[CommentItem] = []
    found = False
    for table in tables:
        cols: dict[str, list[int]] | None = None
        for row in table:
            cells = cell_texts(row)
            header = _comment_header(c, cells)
            if header is not None:
                cols, found = header, True
                continue
            if cols is None:
                continue

            def cell(i: int, cells: list[str] = cells) -> str:
                return cells[i].strip() if i < len(cells) else ""

            opinion = cell(cols["opinion"][0])
            reason = "\n".join(x for x in (cell(i) for i in cols.get("reason", [])) if x)
            if not opinion and not reason:
                continue
            text = "\n".join(x for x in (opinion, reason) if x)
            location = " ".join(x for x in (cell(i) for i in cols["location"]) if x) or None
            summary = "\n".join(x for x in (cell(i) for i in cols.get("summary", [])) if x) or None
            used = {i for v in cols.values() for i in v}
            extra = [cell(i) for i in range(len(cells)) if i not in used]
            items.append(make_item(c, text, location, summary, extra))
    return items, found


def table_fields(
    c: Compiled, tables: Sequence[Sequence[Sequence[Any]]]
) -> tuple[list[tuple[str, str]], list[bool], str | None]:
    """Fields (label cell → value cell, or label row → value row), anonymity answers, a 要旨 row."""
    fields: list[tuple[str, str]] = []
    anon: list[bool] = []
    summary: str | None = None
    for table in tables:
        rows = [cell_texts(r) for r in table]
        for r, cells in enumerate(rows):
            found, dangling = row_fields(c, cells)
            fields.extend(found)
            below = rows[r + 1] if r + 1 < len(rows) else []
            for i in dangling:
                if i < len(below) and below[i].strip() and c.cell_label(below[i]) is None:
                    lab = c.cell_label(cells[i])
                    if lab is not None:
                        fields.append((lab[1], below[i].strip()))
            for i, cellv in enumerate(cells):
                if not cellv.strip():
                    continue
                lab = c.cell_label(cellv)
                if lab == ("comment", "summary") and summary is None:
                    nxt = next(
                        (x.strip() for x in cells[i + 1 :] if x.strip() and label_key(x) != label_key(cellv)), ""
                    )
                    summary = nxt or None
                k = label_key(cellv)
                if k in c.anon_markers and i + 1 < len(cells):
                    answer = label_key(cells[i + 1]).strip(OPENS + CLOSES)
                    anon.append(bool(answer) and answer not in NEGATIVE_ANSWERS)
                    continue
                a = c.anonymity(nfkc(cellv))
                if a is not None:
                    anon.append(a)
    return fields, anon, summary


def tab_tables(text: str) -> list[list[list[str]]]:
    """Runs of two or more consecutive tab-separated lines, as tables."""
    tables: list[list[list[str]]] = []
    run: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if "\t" in line:
            run.append(line.split("\t"))
            continue
        if len(run) >= 2:
            tables.append(run)
        run = []
    return tables


def tables_as_text(c: Compiled, tables: Sequence[Sequence[Sequence[Any]]]) -> str:
    """A vertical form (label cell | value cell per row) as "label：value" lines."""
    out: list[str] = []
    for table in tables:
        skip_next = False
        for row in table:
            cells: list[str] = []
            for v in cell_texts(row):
                v = v.strip()
                if v and (not cells or label_key(cells[-1]) != label_key(v)):
                    cells.append(v)
            if skip_next or not cells:
                skip_next = False
                continue
            labels = [c.cell_label(v) for v in cells]
            if len(cells) >= 2 and all(lab is not None and lab[0] == "field" for lab in labels):
                skip_next = True  # a row of field labels, their values in the row below
                continue
            if len(cells) >= 2 and c.cell_label(cells[0]) is not None:
                out.append(f"{cells[0]}：" + "\n".join(cells[1:]))
            else:
                out.append("\n".join(cells))
            out.append("")
    return "\n".join(out)
