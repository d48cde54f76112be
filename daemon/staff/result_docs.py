"""The result document 「提出された意見及び考え方」 written as Word (.docx) and Excel (.xlsx).

The layout is the one the ministries publish (総務省's 「提出された意見及び総務省の考え方」 別紙): the title, the
consultation and its period, 「意見提出者一覧」 with 「計N者（M件）（意見提出順、敬称略）」 and a numbered list of
submitters, then per section of the draft its heading and a table 番号 / 提出された意見 / 意見に対する考え方
(/ 修正の有無). Both files are made for paper: A4 landscape, borders, the header row on every page, rows whose
height fits their text.

The writers take a plain ResultDocument (daemon/staff/result_model.py) and know nothing of the database.
python-docx and openpyxl escape the XML themselves; here only the characters XML cannot carry at all are removed
(sheet_layout.xml_text), and spreadsheet strings are stored as text so that none is read as a formula.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from daemon.staff import sheet_layout as layout
from daemon.staff.result_model import ResultDocument, ResultRow, ResultSection, same_label

H_NUMBER = "番号"
H_OPINION = "提出された意見"
H_ANSWER = "意見に対する考え方"
H_REVISED = "修正の有無"
H_ORDER = "受付順"
H_SUBMITTER = "意見提出者"
LIST_TITLE = "意見提出者一覧"
TABLE_SHEET = "提出された意見及び考え方"
CONTINUED = "\n（続き）"  # under the 番号 of a row whose text goes on from the row above
FONT_BODY = "IPAexMincho"  # fonts-ipaexfont: installed by scripts/setup; Word substitutes its own where absent
FONT_HEAD = "IPAexGothic"


def headers(doc: ResultDocument) -> list[str]:
    cols = [H_NUMBER, H_OPINION, H_ANSWER]
    return [*cols, H_REVISED] if doc.show_revised else cols


def submitters_line(row: ResultRow) -> str:
    return "【意見提出者】" + "、".join(row.submitters) if row.submitters else ""


def opinion_lines(row: ResultRow) -> list[str]:
    """The 提出された意見 cell: who sent it, the text, and 「（同旨N件）」 for a group."""
    lines = [submitters_line(row), row.opinion, same_label(row)]
    return [layout.xml_text(x) for x in lines if x]


def period_lines(doc: ResultDocument) -> list[str]:
    lines = []
    if doc.consultation:
        lines.append(f"意見募集対象：{doc.consultation}")
    if doc.period:
        lines.append(f"意見募集期間：{doc.period}")
    return lines


def sections(doc: ResultDocument) -> list[ResultSection]:
    """The sections that have rows: an empty section is not printed."""
    return [s for s in doc.sections if s.rows]


# -- Word ------------------------------------------------------------------------------------------
_WORD_WIDTHS_MM = {H_NUMBER: 22.0, H_REVISED: 24.0}  # the opinion and answer columns share the rest 55:45


def _word_widths(cols: Sequence[str], usable_mm: float) -> list[float]:
    fixed = sum(_WORD_WIDTHS_MM.get(c, 0.0) for c in cols)
    rest = usable_mm - fixed
    share = {H_OPINION: 0.55, H_ANSWER: 0.45}
    return [_WORD_WIDTHS_MM.get(c, rest * share.get(c, 0.0)) for c in cols]


def _east_asian(element: Any, font: str) -> None:
    """Set the font of a style's or a run's rPr for Latin and East Asian text alike (Word picks the eastAsia
    font for Japanese; python-docx's font.name sets only the Latin ones)."""
    from docx.oxml.ns import qn

    rpr = element.get_or_add_rPr()
    fonts = rpr.find(qn("w:rFonts"))
    if fonts is None:
        fonts = rpr.makeelement(qn("w:rFonts"), {})
        rpr.insert(0, fonts)
    for attr in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attr), font)


def _run(paragraph: Any, text: str, bold: bool = False, font: str | None = None, size: float | None = None) -> Any:
    from docx.shared import Pt

    run = paragraph.add_run(layout.xml_text(text))
    run.bold = bold or None
    if font:
        _east_asian(run._r, font)
    if size:
        run.font.size = Pt(size)
    return run


def _cell_lines(cell: Any, lines: Sequence[str], bold_first: bool = False, font: str | None = None) -> None:
    """Each line (and each newline in it) as its own paragraph of the cell."""
    paragraphs: list[tuple[str, bool]] = []
    for n, line in enumerate(lines):
        paragraphs += [(part, bold_first and n == 0) for part in line.split("\n")]
    first = cell.paragraphs[0]
    for n, (text, bold) in enumerate(paragraphs):
        p = first if n == 0 else cell.add_paragraph()
        if text:
            _run(p, text, bold=bold, font=FONT_HEAD if bold else font)


def _shade(cell: Any, fill: str) -> None:
    from docx.oxml.ns import qn

    tcpr = cell._tc.get_or_add_tcPr()
    shd = tcpr.makeelement(qn("w:shd"), {qn("w:val"): "clear", qn("w:color"): "auto", qn("w:fill"): fill})
    tcpr.append(shd)


def _repeat_header(row: Any) -> None:
    """The row is repeated at the top of every page the table runs onto (w:tblHeader)."""
    from docx.oxml.ns import qn

    trpr = row._tr.get_or_add_trPr()
    trpr.append(trpr.makeelement(qn("w:tblHeader"), {qn("w:val"): "true"}))


def _table(document: Any, cols: Sequence[str], widths_mm: Sequence[float]) -> Any:
    from docx.enum.table import WD_TABLE_ALIGNMENT
    from docx.shared import Mm

    table = document.add_table(rows=1, cols=len(cols))
    table.style = "Table Grid"  # borders on every cell
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    table.autofit = False
    for col, w in zip(table.columns, widths_mm, strict=True):
        col.width = Mm(w)  # w:gridCol, what LibreOffice reads
    head = table.rows[0]
    _repeat_header(head)
    for cell, name, w in zip(head.cells, cols, widths_mm, strict=True):
        cell.width = Mm(w)  # w:tcW, what Word reads
        _shade(cell, "D9D9D9")
        _run(cell.paragraphs[0], name, bold=True, font=FONT_HEAD)
    return table


def _add_row(table: Any, widths_mm: Sequence[float]) -> list[Any]:
    from docx.shared import Mm

    cells = table.add_row().cells  # rows may break across pages: no w:cantSplit
    for cell, w in zip(cells, widths_mm, strict=True):
        cell.width = Mm(w)
    return list(cells)


def _page_number(section: Any) -> None:
    """「- N -」 centred in the footer, as the ministries' documents have it."""
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml.ns import qn

    p = section.footer.paragraphs[0]
    p.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _run(p, "- ")
    field = p._p.makeelement(qn("w:fldSimple"), {qn("w:instr"): "PAGE"})
    r = field.makeelement(qn("w:r"), {})
    t = r.makeelement(qn("w:t"), {})
    t.text = "1"
    r.append(t)
    field.append(r)
    p._p.append(field)
    _run(p, " -")


def write_docx(out: Any, doc: ResultDocument) -> None:
    """The result document as Word: A4 landscape, Japanese fonts, tables with borders whose header row is
    repeated on every page. `out` is a path or a binary stream."""
    from docx import Document
    from docx.enum.section import WD_ORIENT
    from docx.enum.text import WD_ALIGN_PARAGRAPH, WD_BREAK
    from docx.shared import Mm, Pt

    document = Document()
    section = document.sections[0]
    section.orientation = WD_ORIENT.LANDSCAPE
    section.page_width, section.page_height = Mm(297), Mm(210)
    section.left_margin = section.right_margin = Mm(20)
    section.top_margin = section.bottom_margin = Mm(18)
    section.footer_distance = Mm(8)
    usable = 297 - 40.0
    normal = document.styles["Normal"]
    normal.font.size = Pt(10.5)
    _east_asian(normal.element, FONT_BODY)
    normal.paragraph_format.space_after = Pt(0)
    _page_number(section)

    title = document.add_paragraph()
    title.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _run(title, doc.title, bold=True, font=FONT_HEAD, size=14)
    for line in period_lines(doc):
        _run(document.add_paragraph(), line)
    document.add_paragraph()
    _run(document.add_paragraph(), LIST_TITLE, bold=True, font=FONT_HEAD, size=12)
    _run(document.add_paragraph(), doc.counts_line)
    list_widths = [20.0, 130.0]
    table = _table(document, [H_ORDER, H_SUBMITTER], list_widths)
    for n, name in enumerate(doc.submitters, 1):
        order, who = _add_row(table, list_widths)
        _cell_lines(order, [str(n)])
        order.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.CENTER
        _cell_lines(who, [name])

    cols = headers(doc)
    widths = _word_widths(cols, usable)
    for n, sec in enumerate(sections(doc)):
        heading = document.add_paragraph()
        if n == 0:  # the opinions begin on a page of their own, after the list of submitters
            heading.add_run().add_break(WD_BREAK.PAGE)
        else:
            heading.paragraph_format.space_before = Pt(12)
        heading.paragraph_format.keep_with_next = True
        _run(heading, sec.heading, bold=True, font=FONT_HEAD, size=12)
        table = _table(document, cols, widths)
        for row in sec.rows:
            cells = _add_row(table, widths)
            _cell_lines(cells[0], [row.number])
            _cell_lines(cells[1], opinion_lines(row), bold_first=bool(row.submitters))
            _cell_lines(cells[2], [row.answer or ""])
            if doc.show_revised:
                _cell_lines(cells[3], [row.revised or ""])
                cells[3].paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.CENTER
    document.save(out)


# -- Excel -----------------------------------------------------------------------------------------
FONT_SIZE = 10.0
# A text longer than this many lines goes on in the next row: a sheet row never breaks across pages, so rows
# of about half a page fill the pages better than rows as tall as Excel allows.
PIECE_LINES = 20
_XLSX_WIDTHS = {H_NUMBER: 11.0, H_OPINION: 75.0, H_ANSWER: 60.0, H_REVISED: 9.0, H_ORDER: 8.0, H_SUBMITTER: 70.0}


def _xlsx_rows(row: ResultRow, show_revised: bool) -> list[list[str]]:
    """One table row as sheet rows: a text taller than Excel's tallest row continues in the rows below it,
    marked 「（続き）」 under the 番号, so that nothing is cut off on paper."""
    opinion = layout.split_to_fit("\n".join(opinion_lines(row)), _XLSX_WIDTHS[H_OPINION], FONT_SIZE, PIECE_LINES)
    answer = layout.split_to_fit(layout.xml_text(row.answer or ""), _XLSX_WIDTHS[H_ANSWER], FONT_SIZE, PIECE_LINES)
    out: list[list[str]] = []
    for i in range(max(len(opinion), len(answer))):
        cells = [row.number if i == 0 else row.number + CONTINUED,
                 opinion[i] if i < len(opinion) else "", answer[i] if i < len(answer) else ""]
        if show_revised:
            cells.append((row.revised or "") if i == 0 else "")
        out.append(cells)
    return out


class _Sheet:
    """Appends styled rows to one worksheet and remembers what the page setup needs."""

    def __init__(self, ws: Any, cols: Sequence[str]) -> None:
        from openpyxl.styles import Alignment, Font, PatternFill
        from openpyxl.utils import get_column_letter

        self.ws = ws
        self.widths = [_XLSX_WIDTHS[c] for c in cols]
        self.ncols = len(cols)
        self.font = Font(name=FONT_HEAD, size=FONT_SIZE)
        self.bold = Font(name=FONT_HEAD, size=FONT_SIZE, bold=True)
        self.title_font = Font(name=FONT_HEAD, size=FONT_SIZE + 4, bold=True)
        self.head_fill = PatternFill("solid", fgColor="D9D9D9")
        self.section_fill = PatternFill("solid", fgColor="F2F2F2")
        self.wrap = Alignment(vertical="top", wrap_text=True)
        self.centre = Alignment(horizontal="center", vertical="top", wrap_text=True)
        self.border = layout.thin_border()
        for n, w in enumerate(self.widths, 1):
            ws.column_dimensions[get_column_letter(n)].width = w
        self.row = 0

    def line(self, text: str, font: Any = None, merge: bool = True) -> None:
        """A line of text across the whole width (title, period, counts), without borders."""
        self.row += 1
        c = self.ws.cell(row=self.row, column=1)
        layout.set_text(c, text)
        c.font, c.alignment = font or self.font, self.wrap
        if merge and self.ncols > 1:
            self.ws.merge_cells(start_row=self.row, start_column=1, end_row=self.row, end_column=self.ncols)
        size = (font or self.font).sz or FONT_SIZE
        self.ws.row_dimensions[self.row].height = layout.row_height([(text, sum(self.widths))], size)

    def section(self, text: str) -> None:
        self.line(text, self.bold)
        for col in range(1, self.ncols + 1):
            c = self.ws.cell(row=self.row, column=col)
            c.border, c.fill = self.border, self.section_fill

    def cells(self, values: Sequence[str], head: bool = False, centred: Sequence[int] = ()) -> int:
        self.row += 1
        for col, v in enumerate(values, 1):
            c = self.ws.cell(row=self.row, column=col)
            layout.set_text(c, v)
            c.border = self.border
            c.font = self.bold if head else self.font
            # headers left-aligned like the text below them: a reader's eye (and a test's crop) finds the
            # column where its header starts
            c.alignment = self.centre if col in centred else self.wrap
            if head:
                c.fill = self.head_fill
        self.ws.row_dimensions[self.row].height = layout.row_height(zip(values, self.widths, strict=True),
                                                                     FONT_SIZE)
        return self.row


def write_xlsx(out: Any, doc: ResultDocument) -> None:
    """The result document as Excel: a sheet 「意見提出者一覧」 and a sheet 「提出された意見及び考え方」 with every
    section, printed A4 landscape to the page width with the header row on every page. `out` is a path or a
    binary stream."""
    from openpyxl import Workbook

    wb = Workbook()
    sheet = _Sheet(wb.active, [H_ORDER, H_SUBMITTER])
    sheet.ws.title = LIST_TITLE
    sheet.line(doc.title, sheet.title_font)
    for line in period_lines(doc):
        sheet.line(line)
    sheet.line(LIST_TITLE, sheet.bold)
    sheet.line(doc.counts_line)
    head = sheet.cells([H_ORDER, H_SUBMITTER], head=True)
    for n, name in enumerate(doc.submitters, 1):
        sheet.cells([str(n), layout.xml_text(name)], centred=(1,))
    layout.print_setup(sheet.ws, f"{head}:{head}")

    cols = headers(doc)
    sheet = _Sheet(wb.create_sheet(TABLE_SHEET), cols)
    sheet.line(doc.title, sheet.title_font)
    first_head = 0
    for sec in sections(doc):
        sheet.section(sec.heading)
        h = sheet.cells(cols, head=True)
        first_head = first_head or h
        for row in sec.rows:
            for values in _xlsx_rows(row, doc.show_revised):
                sheet.cells(values, centred=(1, 4))
    layout.print_setup(sheet.ws, f"{first_head}:{first_head}" if first_head else None)
    wb.save(out)
