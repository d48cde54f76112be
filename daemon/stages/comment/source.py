"""One source (the body or one attachment) read on its own: its items, 要旨, fields and anonymity answers.

`analysis` then decides which sources hold the comment and which the submitter.
"""

from __future__ import annotations

from dataclasses import dataclass

from .labels import Compiled
from .lines import accept_headings, classify_lines, split_lines
from .model import CommentItem, TextSource
from .sections import parse_text
from .tables import cell_texts, tab_tables, table_fields, table_items, tables_as_text


@dataclass
class SourceInfo:
    src: TextSource
    items: list[CommentItem]
    whole_summary: str | None
    fields: list[tuple[str, str]]
    anon: list[bool]
    has_fields: bool
    has_comment_table: bool
    has_markers: bool
    has_text: bool


def analyze_source(c: Compiled, src: TextSource) -> SourceInfo:
    lines = split_lines(src.text or "")
    classify_lines(c, lines, src.is_body)
    has_headings = accept_headings(lines)
    parsed = parse_text(c, lines, has_headings)

    fields: list[tuple[str, str]] = []
    anon: list[bool] = []
    has_fields = False
    for ln in lines:
        if ln.kind == "field":
            has_fields = has_fields or ln.strength in ("strong", "alone")
            fields.extend((k, v) for k, v in ln.fields if v)
        if ln.anon is not None:
            anon.append(ln.anon)

    t_fields, t_anon, t_summary = table_fields(c, src.tables)
    has_fields = has_fields or any(
        (lab := c.cell_label(v)) is not None and lab[0] == "field"
        for t in src.tables
        for row in t
        for v in cell_texts(row)
        if v.strip()
    )
    fields.extend(t_fields)
    anon.extend(t_anon)

    t_items, has_table = table_items(c, src.tables)
    if not has_table and not src.tables:
        # a plain-text table: "該当箇所<TAB>意見<TAB>理由" and one tab-separated line per row
        t_items, has_table = table_items(c, tab_tables(src.text or ""))
    items = parsed.items
    whole_summary = parsed.whole_summary
    if has_table:
        # the comment table is the comment; the text (which may repeat the cells) only adds a 要旨
        items = t_items
        whole_summary = whole_summary or t_summary or next((i.summary for i in parsed.items if i.summary), None)
    elif not items and src.tables:
        t_lines = split_lines(tables_as_text(c, src.tables))
        classify_lines(c, t_lines, False)
        t_parsed = parse_text(c, t_lines, accept_headings(t_lines))
        items = t_parsed.items
        whole_summary = whole_summary or t_parsed.whole_summary
    whole_summary = whole_summary or t_summary
    return SourceInfo(
        src=src,
        items=items,
        whole_summary=whole_summary,
        fields=fields,
        anon=anon,
        has_fields=has_fields,
        has_comment_table=has_table,
        has_markers=parsed.has_markers,
        has_text=bool((src.text or "").strip()) or any(v.strip() for t in src.tables for r in t for v in cell_texts(r)),
    )
