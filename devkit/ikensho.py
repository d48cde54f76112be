"""A 意見書 (comment form) as Word or Excel, the way the call's template lays it out: the submitter's
fields as "label：value" lines (Word) or label/value rows (Excel), then a table of 該当箇所 / 意見 / 理由.

For the samples, the demo and the tests (one builder, so they all test the same shape of form).
"""

from __future__ import annotations

import io

HEADERS = ("該当箇所", "意見", "理由")


def ikensho_docx(fields: list[tuple[str, str]], rows: list[tuple[str, ...]], *, title: str | None = "意見書",
                 headers: tuple[str, ...] = HEADERS) -> bytes:
    import docx

    d = docx.Document()
    if title:
        d.add_paragraph(title)
    for label, value in fields:
        d.add_paragraph(f"{label}：{value}")
    t = d.add_table(rows=1, cols=len(headers))
    for cell, text in zip(t.rows[0].cells, headers, strict=True):
        cell.text = text
    for row in rows:
        for cell, text in zip(t.add_row().cells, row, strict=True):
            cell.text = text
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def ikensho_xlsx(fields: list[tuple[str, str]], rows: list[tuple[str, ...]], *,
                 headers: tuple[str, ...] = HEADERS) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    for label, value in fields:
        ws.append([label, value])
    ws.append([])
    ws.append(list(headers))
    for row in rows:
        ws.append(list(row))
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
