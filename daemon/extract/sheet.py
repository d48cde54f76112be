"""Excel (.xlsx and .xls) through python-calamine, plus the text of shapes, text boxes and notes.

Cells come row by row, left to right; every non-empty sheet is also a table (its used range).
Shape/text-box/comment text (not visible to calamine) is appended after all sheets: from the
DrawingML and comments parts of an .xlsx, from the TXO records of an .xls.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import struct
from collections.abc import Iterator

from daemon.guards import BoundedZip, Deadline, ZipLimits

from ._common import ExtractError, Extraction, ole_stream, open_zip, parse_xml

DEFAULT_MAX_CELLS = 100_000
CELLS_CUT = "limit:sheet_cells"
A = "{http://schemas.openxmlformats.org/drawingml/2006/main}"
S = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


def cell_str(value: object) -> str:
    """A cell as it would read: integers without ".0", dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _calamine(data: bytes, deadline: Deadline, max_cells: int) -> tuple[list[str], list[list[list[str]]], bool]:
    """(lines, tables, cut): at most `max_cells` cells a sheet (whole rows of the sheet's width); a sheet with
    more is cut there (a million-row sheet took the process tree to 923 MB read whole)."""
    import python_calamine

    lines: list[str] = []
    tables: list[list[list[str]]] = []
    cut = False
    try:
        wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        for name in wb.sheet_names:
            deadline.check()
            sheet = wb.get_sheet_by_name(name)
            nrows = max_cells // max(1, sheet.width)  # whole rows within the cell budget
            rows = sheet.to_python(nrows=nrows + 1)
            if len(rows) > nrows:
                rows, cut = rows[:nrows], True
            table = [[cell_str(v) for v in row] for row in rows]
            while table and not any(table[-1]):
                table.pop()
            if not table:
                continue
            tables.append(table)
            for line in table:
                cells = [c for c in line if c]
                if cells:
                    lines.append("\t".join(cells))
    except ExtractError:
        raise
    except Exception as exc:  # calamine raises its own error types for malformed books
        raise ExtractError("corrupt") from exc
    return lines, tables, cut


def _natural(name: str) -> tuple[str, int]:
    m = re.search(r"(\d+)\.xml$", name)
    return (name.rsplit("/", 1)[0], int(m.group(1)) if m else 0)


def _xlsx_shapes(zf: BoundedZip) -> list[str]:
    out: list[str] = []
    drawings = sorted((n for n in zf.names if re.fullmatch(r"xl/drawings/drawing\d+\.xml", n)), key=_natural)
    for name in drawings:
        root = parse_xml(zf.read(name))
        for p in root.iter(A + "p"):
            out.append("".join(t.text or "" for t in p.iter(A + "t")))
    comments = sorted((n for n in zf.names if re.fullmatch(r"xl/comments\d*\.xml", n)), key=_natural)
    for name in comments:
        root = parse_xml(zf.read(name))
        for comment in root.iter(S + "comment"):
            out.append("".join(t.text or "" for t in comment.iter(S + "t")))
    return [line for line in out if line.strip()]


def extract_xlsx(data: bytes, deadline: Deadline, zip_limits: ZipLimits,
                 max_cells: int = DEFAULT_MAX_CELLS) -> Extraction:
    zf = open_zip(data, zip_limits, deadline)  # declared sizes are checked before calamine inflates
    if not any(n.startswith("xl/") for n in zf.names):
        raise ExtractError("corrupt")
    lines, tables, cut = _calamine(data, deadline, max_cells)
    lines += _xlsx_shapes(zf)
    text = "\n".join(lines)
    return Extraction(text=text, tables=tables, decoder="xlsx", replaced=text.count("\ufffd"),
                      error=CELLS_CUT if cut else None)


# --- .xls -----------------------------------------------------------------------------------

_FILEPASS = 0x002F
_TXO = 0x01B6
_CONTINUE = 0x003C


def _biff_records(stream: bytes) -> Iterator[tuple[int, bytes]]:
    pos, end = 0, len(stream)
    while pos + 4 <= end:
        rtype, size = struct.unpack_from("<HH", stream, pos)
        yield rtype, stream[pos + 4 : pos + 4 + size]
        pos += 4 + size


def _xls_workbook_stream(data: bytes) -> bytes:
    import olefile

    try:
        ole = olefile.OleFileIO(data)
        for name in ("Workbook", "Book"):
            if ole.exists(name):
                return ole_stream(ole, name, len(data))
    except ExtractError:
        raise
    except Exception as exc:  # olefile raises OSError / struct errors / IndexError on junk
        raise ExtractError("corrupt") from exc
    raise ExtractError("corrupt")


def _xls_txo_texts(stream: bytes, deadline: Deadline) -> list[str]:
    """Text of text boxes, shapes and cell notes: a TXO record followed by CONTINUE records."""
    out: list[str] = []
    records = list(_biff_records(stream))
    for i, (rtype, body) in enumerate(records):
        if rtype == _FILEPASS:
            raise ExtractError("encrypted")
        if rtype != _TXO or len(body) < 14:
            continue
        if i % 1000 == 0:
            deadline.check()
        remaining = struct.unpack_from("<H", body, 10)[0]
        parts: list[str] = []
        j = i + 1
        while remaining > 0 and j < len(records) and records[j][0] == _CONTINUE:
            cont = records[j][1]
            if not cont:
                break
            if cont[0] & 1:
                chunk = cont[1 : 1 + 2 * remaining].decode("utf-16-le", errors="replace")
            else:
                chunk = cont[1 : 1 + remaining].decode("latin-1")
            if not chunk:
                break
            parts.append(chunk)
            remaining -= len(chunk)
            j += 1
        text = "".join(parts).replace("\r\n", "\n").replace("\r", "\n")
        out.extend(line for line in text.split("\n") if line.strip())
    return out


def extract_xls(data: bytes, deadline: Deadline, max_cells: int = DEFAULT_MAX_CELLS) -> Extraction:
    stream = _xls_workbook_stream(data)
    shapes = _xls_txo_texts(stream, deadline)  # also detects FILEPASS (encrypted)
    lines, tables, cut = _calamine(data, deadline, max_cells)
    text = "\n".join(lines + shapes)
    return Extraction(text=text, tables=tables, decoder="xls", replaced=text.count("\ufffd"),
                      error=CELLS_CUT if cut else None)
