"""Word 97-2003 (.doc): the text of the piece table, read with olefile.

FIB (WordDocument stream) -> fcClx/lcbClx in the 0Table/1Table stream (fWhichTblStm) -> CLX ->
PlcPcd -> pieces, each cp1252 bytes ("compressed", at fc/2) or UTF-16LE. All stories are read:
main text, then footnotes, headers/footers, comments, endnotes and text boxes, in the order the
piece table holds them. Table rows are recovered from the paragraph properties (PAPX FKPs): a
paragraph ending in \\x07 is a cell end, or a row end when it carries sprmPFTtp. When the PAPX
cannot be read, "\\x07\\x07" is taken as the end of a row.
"""

from __future__ import annotations

import bisect
import struct

from daemon.guards import Deadline

from ._common import ExtractError, Extraction, ole_stream

_SPRM_IN_TABLE = 0x2416
_SPRM_TTP = 0x2417
_SPRM_ITAP = 0x6649
_SPRM_DEF_TABLE = 0xD608
_DROP = {chr(c) for c in range(0x20)} - {"\t", "\n"}


def _u16(b: bytes, off: int) -> int:
    return struct.unpack_from("<H", b, off)[0]


def _u32(b: bytes, off: int) -> int:
    return struct.unpack_from("<I", b, off)[0]


def _open(data: bytes) -> tuple[bytes, bytes]:
    import olefile

    try:
        ole = olefile.OleFileIO(data)
        if not ole.exists("WordDocument"):
            raise ExtractError("corrupt")
        wd = ole_stream(ole, "WordDocument", len(data))
        if len(wd) < 0x200:
            raise ExtractError("corrupt")
        ident, nfib = _u16(wd, 0), _u16(wd, 2)
        if ident != 0xA5EC or nfib < 101:
            raise ExtractError("unsupported:word6")
        flags = _u16(wd, 0x0A)
        if flags & 0x0100:  # fEncrypted
            raise ExtractError("encrypted")
        table_name = "1Table" if flags & 0x0200 else "0Table"
        if not ole.exists(table_name):
            raise ExtractError("corrupt")
        return wd, ole_stream(ole, table_name, len(data))
    except ExtractError:
        raise
    except Exception as exc:  # olefile: OSError, struct.error, IndexError... on junk
        raise ExtractError("corrupt") from exc


class _Fib:
    def __init__(self, wd: bytes) -> None:
        csw = _u16(wd, 32)
        lw = 34 + 2 * csw
        cslw = _u16(wd, lw)
        rglw = lw + 2
        fclcb = rglw + 4 * cslw
        cb_fclcb = _u16(wd, fclcb)
        self.rgfclcb = fclcb + 2
        if cslw < 11 or cb_fclcb < 34:
            raise ExtractError("corrupt")
        # ccpText, ccpFtn, ccpHdd, (ccpMcr), ccpAtn, ccpEdn, ccpTxbx, ccpHdrTxbx
        self.ccp = [_u32(wd, rglw + 4 * i) for i in (3, 4, 5, 7, 8, 9, 10)]
        self.wd = wd

    def pair(self, index: int) -> tuple[int, int]:
        off = self.rgfclcb + 8 * index
        return _u32(self.wd, off), _u32(self.wd, off + 4)


def _pieces(table: bytes, fc_clx: int, lcb_clx: int) -> list[tuple[int, int, int, bool]]:
    """[(cp_start, cp_end, fc, compressed)] from the CLX."""
    clx = table[fc_clx : fc_clx + lcb_clx]
    if len(clx) != lcb_clx or lcb_clx == 0:
        raise ExtractError("corrupt")
    pos = 0
    while pos < len(clx) and clx[pos] == 0x01:  # Prc: skip grpprl
        pos += 3 + struct.unpack_from("<h", clx, pos + 1)[0]
    if pos + 5 > len(clx) or clx[pos] != 0x02:
        raise ExtractError("corrupt")
    lcb = _u32(clx, pos + 1)
    plc = clx[pos + 5 : pos + 5 + lcb]
    if len(plc) != lcb or (lcb - 4) % 12:
        raise ExtractError("corrupt")
    n = (lcb - 4) // 12
    cps = struct.unpack_from(f"<{n + 1}I", plc, 0)
    out = []
    for i in range(n):
        raw_fc = _u32(plc, 4 * (n + 1) + 8 * i + 2)
        compressed = bool(raw_fc & 0x40000000)
        fc = raw_fc & 0x3FFFFFFF
        out.append((cps[i], cps[i + 1], fc // 2 if compressed else fc, compressed))
    return out


def _sprm_size(grpprl: bytes, pos: int, sprm: int) -> int:
    spra = sprm >> 13
    if spra in (0, 1):
        return 1
    if spra in (2, 4, 5):
        return 2
    if spra == 3:
        return 4
    if spra == 7:
        return 3
    if sprm == _SPRM_DEF_TABLE:
        return 2 + max(_u16(grpprl, pos) - 1, 0) if pos + 2 <= len(grpprl) else len(grpprl)
    return 1 + grpprl[pos] if pos < len(grpprl) else 1


def _para_runs(wd: bytes, table: bytes, fib: _Fib) -> tuple[list[int], list[tuple[int, bool, bool, bool]]]:
    """Paragraph runs from the PAPX FKPs: starts (sorted fc), (end_fc, in_table, ttp, nested)."""
    fc, lcb = fib.pair(13)  # fcPlcfBtePapx
    plc = table[fc : fc + lcb]
    if lcb < 12 or len(plc) != lcb or (lcb - 4) % 8:
        raise ExtractError("corrupt")
    n = (lcb - 4) // 8
    runs: list[tuple[int, int, bool, bool, bool]] = []
    for i in range(n):
        pn = _u32(plc, 4 * (n + 1) + 4 * i) & 0x3FFFFF
        fkp = wd[pn * 512 : pn * 512 + 512]
        if len(fkp) != 512:
            raise ExtractError("corrupt")
        crun = fkp[511]
        if 4 * (crun + 1) + 13 * crun > 511:
            raise ExtractError("corrupt")
        rgfc = struct.unpack_from(f"<{crun + 1}I", fkp, 0)
        for j in range(crun):
            boff = fkp[4 * (crun + 1) + 13 * j] * 2
            in_table = ttp = False
            itap = 1
            if boff:
                cb = fkp[boff]
                if cb:
                    start, size = boff + 1, 2 * cb - 1
                else:
                    start, size = boff + 2, 2 * fkp[boff + 1]
                grpprl = fkp[start + 2 : start + size]  # after istd
                pos = 0
                while pos + 2 <= len(grpprl):
                    sprm = _u16(grpprl, pos)
                    pos += 2
                    if sprm == _SPRM_IN_TABLE and pos < len(grpprl):
                        in_table = grpprl[pos] != 0
                    elif sprm == _SPRM_TTP and pos < len(grpprl):
                        ttp = grpprl[pos] != 0
                    elif sprm == _SPRM_ITAP and pos + 4 <= len(grpprl):
                        itap = _u32(grpprl, pos)
                    pos += _sprm_size(grpprl, pos, sprm)
            runs.append((rgfc[j], rgfc[j + 1], in_table, ttp, itap > 1))
    runs.sort()
    return [r[0] for r in runs], [(r[1], r[2], r[3], r[4]) for r in runs]


class _Paras:
    def __init__(self, starts: list[int] | None, runs: list[tuple[int, bool, bool, bool]] | None) -> None:
        self.starts, self.runs = starts, runs

    def props(self, fc: int) -> tuple[bool, bool, bool] | None:
        """(in_table, ttp, nested) of the paragraph holding the byte at fc, or None if unknown."""
        if self.starts is None or self.runs is None:
            return None
        i = bisect.bisect_right(self.starts, fc) - 1
        if i < 0 or fc >= self.runs[i][0]:
            return None
        return self.runs[i][1], self.runs[i][2], self.runs[i][3]


def extract_doc(data: bytes, deadline: Deadline) -> Extraction:
    wd, table = _open(data)
    try:
        fib = _Fib(wd)
        pieces = _pieces(table, *fib.pair(33))  # fcClx
    except (struct.error, IndexError) as exc:
        raise ExtractError("corrupt") from exc
    total = sum(fib.ccp)
    total += 1 if total > fib.ccp[0] else 0

    # text of every piece; remember the file offset of each paragraph/cell mark
    chunks: list[str] = []
    mark_fc: dict[int, int] = {}
    replaced = 0
    for cp_start, cp_end, fc, compressed in pieces:
        deadline.check()
        if cp_start >= total:
            break
        count = min(cp_end, total) - cp_start
        if count <= 0:
            continue
        width = 1 if compressed else 2
        raw = wd[fc : fc + count * width]
        if len(raw) != count * width:
            raise ExtractError("corrupt")
        piece = raw.decode("cp1252" if compressed else "utf-16-le", errors="replace")
        replaced += piece.count("\ufffd")
        for mark in ("\r", "\x07"):
            k = piece.find(mark)
            while k >= 0:
                mark_fc[cp_start + k] = fc + k * width
                k = piece.find(mark, k + 1)
        chunks.append(piece)
    text = "".join(chunks)

    try:
        paras = _Paras(*_para_runs(wd, table, fib))
    except (ExtractError, struct.error, IndexError):
        paras = _Paras(None, None)
    deadline.check()
    lines, tables = _layout(text, mark_fc, paras, deadline)
    out = "\n".join(lines).strip("\n")
    return Extraction(text=out, tables=tables, decoder="doc-piece-table", replaced=replaced)


def _layout(
    text: str, mark_fc: dict[int, int], paras: _Paras, deadline: Deadline
) -> tuple[list[str], list[list[list[str]]]]:
    lines: list[str] = []
    tables: list[list[list[str]]] = []
    cur: list[str] = []  # current paragraph
    cell_paras: list[str] = []  # earlier paragraphs of the current cell
    row: list[str] = []
    rows: list[list[str]] = []
    fields: list[bool] = []  # one entry per open field: True once its result began
    hidden = False
    prev_mark = ""

    def close_table() -> None:
        nonlocal rows
        if rows:
            tables.append(rows)
            rows = []

    for cp, ch in enumerate(text):
        if cp % 100_000 == 0:
            deadline.check()
        if ch == "\x13":
            fields.append(False)
            hidden = True
            continue
        if ch == "\x14":
            if fields:
                fields[-1] = True
                hidden = not all(fields)
            continue
        if ch == "\x15":
            if fields:
                fields.pop()
                hidden = not all(fields)
            continue
        if hidden:
            continue
        if ch == "\r" or ch == "\x07":
            fc = mark_fc.get(cp)
            props = paras.props(fc) if fc is not None else None
            para = "".join(cur)
            cur = []
            if ch == "\r":
                if props is not None and props[0]:
                    cell_paras.append(para)  # a paragraph inside a table cell
                else:
                    close_table()
                    lines.extend(cell_paras)
                    cell_paras = []
                    lines.append(para)
            elif props is not None and props[2]:
                cell_paras.append(para)  # a nested table's cell or row mark: a line of the outer cell
            else:
                row_end = props[1] if props is not None else (prev_mark == "\x07" and not para)
                if row_end:
                    if cell_paras or para:  # stray text before the row mark
                        row.append("\n".join([*cell_paras, para]))
                    cell_paras = []
                    if row:
                        rows.append(row)
                        lines.append("\t".join(c.replace("\n", " ") for c in row))
                    row = []
                else:
                    row.append("\n".join([*cell_paras, para]))
                    cell_paras = []
            prev_mark = ch
            continue
        prev_mark = ""
        if ch in ("\x0b", "\x0c", "\x0e"):
            cur.append("\n")
        elif ch == "\x1e":
            cur.append("-")
        elif ch in _DROP:
            continue
        else:
            cur.append(ch)
    if row:
        rows.append(row)
        lines.append("\t".join(c.replace("\n", " ") for c in row))
    close_table()
    lines.extend(cell_paras)
    if cur:
        lines.append("".join(cur))
    return lines, tables
