"""How a spreadsheet the staff print looks on paper: row heights, borders, the page setup, what a cell may hold.

Neither Excel nor LibreOffice grows a row to fit its wrapped text when it opens a file: a row without a
height stays one line high and LibreOffice draws the rest over the rows below. So every writer here sets each
row's height from an estimate of its lines: a column `width` (Excel's unit, about one half-width character)
holds about `width` half-width or `width / 2` full-width characters per line, and each explicit newline starts
a line. The estimate leans to too many lines (a little white space) rather than too few (text cut off).
Used by daemon/staff/export.py and daemon/staff/result_docs.py.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

XLSX_CELL_MAX = 32767  # Excel's limit on the characters of one cell
CUT_MARK = "…（以下省略）"
MAX_ROW_HEIGHT = 409.0  # points: Excel's largest row height
# Characters XML 1.0 cannot hold (and lone surrogates, which UTF-8 cannot): lxml and openpyxl refuse them.
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# A column of width W holds a little less than W units once the cell's padding and word wrapping are counted.
_USABLE = 0.9
_PADDING_POINTS = 4.0  # above and below the text of a cell


def xml_text(text: str) -> str:
    """`text` without the control characters an XML file cannot carry (tab and newline stay)."""
    return _ILLEGAL_XML.sub("", text)


def cell_text(value: Any) -> Any:
    """A value as an xlsx cell may hold it: strings without illegal characters and cut to Excel's limit."""
    if not isinstance(value, str):
        return value
    value = xml_text(value)
    if len(value) > XLSX_CELL_MAX:
        value = value[: XLSX_CELL_MAX - len(CUT_MARK)] + CUT_MARK
    return value


def set_text(cell: Any, value: Any) -> None:
    """Put `value` into an openpyxl cell; a string is always text, never a formula (`=1+1`, `=HYPERLINK(…)`)."""
    cell.value = cell_text(value)
    if isinstance(cell.value, str):
        cell.data_type = "s"


def char_units(ch: str) -> int:
    """How many width units a character takes: 2 for full-width (CJK, 全角), 1 otherwise."""
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F", "A") else 1


def text_units(text: str) -> int:
    return sum(char_units(c) for c in text)


def _per_line(width: float) -> float:
    return max(width * _USABLE - 1, 2)


def line_count(text: str, width: float) -> int:
    """The lines `text` wraps to in a column of `width` units (at least 1)."""
    per_line = _per_line(width)
    return sum(max(1, math.ceil(text_units(line) / per_line)) for line in str(text).split("\n"))


def line_points(font_size: float) -> float:
    """The height of one line of text in points: a Japanese font's line is about 1.35 times its size."""
    return font_size * 1.35


def row_height(cells: Iterable[tuple[Any, float]], font_size: float = 11.0) -> float:
    """The height (points) a row needs so that each (value, column width) of it shows whole, capped at
    Excel's largest row height."""
    lines = max((line_count(str(v), w) for v, w in cells if v not in (None, "")), default=1)
    return min(MAX_ROW_HEIGHT, round(lines * line_points(font_size) + _PADDING_POINTS, 1))


def max_lines(font_size: float = 11.0) -> int:
    """How many lines fit in the tallest row Excel allows."""
    return int((MAX_ROW_HEIGHT - _PADDING_POINTS) // line_points(font_size))


def _fit_end(text: str, start: int, per_line: float, limit: int) -> int:
    """The index of the first character from `start` that would need line `limit` + 1 (len(text) if none)."""
    done = 0  # lines before the current one
    units = 0  # width of the current line so far
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "\n":
            done, units = done + max(1, math.ceil(units / per_line)), 0
            if done + 1 > limit:
                return i
            continue
        units += char_units(ch)
        if done + math.ceil(units / per_line) > limit:
            return i
    return len(text)


_SOFT_BREAKS = "\n。．！？!?"


def split_to_fit(text: str, width: float, font_size: float = 11.0, lines: int | None = None) -> list[str]:
    """`text` cut into pieces of at most `lines` lines (default: as many as the tallest row holds) in a
    column of `width` units: a text too long for one row is printed as continuation rows instead of being cut
    off at the row's edge. A piece ends after a sentence or at a newline (dropped) when one is near the
    limit, else at the limit itself."""
    limit = min(lines or max_lines(font_size), max_lines(font_size))
    per_line = _per_line(width)
    pieces: list[str] = []
    start = 0
    while True:
        end = _fit_end(text, start, per_line, limit)
        if end >= len(text):
            pieces.append(text[start:])
            return pieces
        cut = end
        if text[end] != "\n":  # else the text breaks right there
            for k in range(end - 1, start + (end - start) * 3 // 4, -1):
                if text[k] in _SOFT_BREAKS:
                    cut = k if text[k] == "\n" else k + 1
                    break
        skip = 1 if text[cut:cut + 1] == "\n" else 0
        pieces.append(text[start:cut])
        start = cut + skip


def fit_row_heights(ws: Any, rows: Iterable[int], widths: Sequence[float], font_size: float = 11.0) -> None:
    """Set the height of each of `rows` (1-based) from its cells' text and the column `widths` (A, B, …)."""
    for r in rows:
        cells = [(ws.cell(row=r, column=c).value, w) for c, w in enumerate(widths, 1)]
        ws.row_dimensions[r].height = row_height(cells, font_size)


def thin_border() -> Any:
    from openpyxl.styles import Border, Side

    side = Side(style="thin", color="000000")
    return Border(left=side, right=side, top=side, bottom=side)


def border_cells(ws: Any, first_row: int, last_row: int, columns: int) -> None:
    """A thin border on every cell of the block, so that the printed table has its grid."""
    border = thin_border()
    for row in ws.iter_rows(min_row=first_row, max_row=last_row, min_col=1, max_col=columns):
        for c in row:
            c.border = border


def print_setup(ws: Any, title_rows: str | None) -> None:
    """A4 landscape, all columns on one page width (as many pages down as needed), `title_rows` (e.g. "1:1")
    repeated at the top of every page."""
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.orientation = ws.ORIENTATION_LANDSCAPE
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0  # 0: as many pages down as the rows need
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.page_margins.left = ws.page_margins.right = 0.4
    ws.page_margins.top = ws.page_margins.bottom = 0.5
    ws.page_margins.header = ws.page_margins.footer = 0.25
    ws.print_options.horizontalCentered = True
    if title_rows:
        ws.print_title_rows = title_rows
