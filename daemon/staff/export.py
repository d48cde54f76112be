"""`intake export`: one row per comment item for the 「提出された意見及びその考え方」 table, as xlsx or csv.

`--public` applies R11: an organisation's 名称 and 代表者 only when it did not ask for anonymity; never an
individual's name, nor anyone's address, postal code, phone, mail or 連絡担当者. Redaction does not rest on the
labels alone: in every text cell the submitter's own values are masked wherever they appear (a name also with
or without its space, and its family name alone), and so is every mail address, phone number, postal code and
street address whoever it belongs to (daemon/stages/comment/personal.py). The public file has no internal
columns (受付番号, flags) and no 統計 sheet.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from typing import IO, Any

from daemon.staff import sheet_layout as layout
from daemon.staff.csv_cells import SafeWriter
from daemon.staff.query import KIND_LABEL, Item, jst_text
from daemon.staff.stats import Stats, excerpt
from daemon.stages.comment import personal

HEADERS = ["項番", "受付番号", "受付日時", "意見提出者", "提出者区分", "該当資料", "該当箇所", "意見", "要旨",
           "flags", "グループ"]
WIDTHS = [6, 9, 19, 28, 11, 10, 22, 80, 40, 22, 9]
INTERNAL = ("受付番号", "flags")  # staff's columns, never in the public file
PUBLIC_HEADERS = [h for h in HEADERS if h not in INTERNAL]
WRAPPED = {"意見提出者", "該当箇所", "意見", "要旨", "flags"}
MASK = "＊＊＊"
ANONYMOUS_ORG = "法人・団体（匿名希望）"
INDIVIDUAL = "個人"
_PHONE_RE = re.compile(r"(?<![0-9０-９])[0０][0-9０-９]{1,4}[-‐－ー−()（）\s]{0,2}[0-9０-９]{1,4}"
                       r"[-‐－ー−()（）\s]{1,2}[0-9０-９]{3,4}(?![0-9０-９])")
_GAP = "[ \t\u3000]*"  # a name written with or without its space(s)
_LETTERS = re.compile(r"[^\W\d_]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff々〆ヶ]")
PERSON_KEYS = ("name", "contact_person", "representative")
XLSX_CELL_MAX = layout.XLSX_CELL_MAX


def targets_label(targets: Sequence[str], labels: dict[str, str]) -> str:
    return "・".join(labels.get(t, t) for t in targets)


def location_text(item: Item) -> str:
    return item.location or "、".join(item.pages)


def public_submitter(sub: dict[str, Any]) -> str:
    if sub.get("kind") == "organization":
        guessed = set(sub.get("guessed") or [])
        if sub.get("anonymous") or guessed & {"organization", "representative"}:
            return ANONYMOUS_ORG
        org = str(sub.get("organization") or "").strip()
        rep = str(sub.get("representative") or "").strip()
        return " ".join(x for x in (org, rep) if x) or ANONYMOUS_ORG
    return INDIVIDUAL


def staff_submitter(sub: dict[str, Any]) -> str:
    if sub.get("kind") == "organization":
        parts = [str(sub.get("organization") or ""), str(sub.get("representative") or "")]
        label = " ".join(p.strip() for p in parts if p and p.strip())
        return label + ("（匿名希望）" if sub.get("anonymous") else "")
    return str(sub.get("name") or "")


def private_values(item: Item) -> list[str]:
    """The strings that identify a person and must not be published for this item's submitter."""
    sub = item.submitter
    keys = ["name", "address", "postal_code", "phone", "email", "contact_person"]
    if sub.get("kind") != "organization" or sub.get("anonymous"):
        keys += ["organization", "representative"]
    elif set(sub.get("guessed") or []) & {"organization", "representative"}:
        keys += ["organization", "representative"]
    values: set[str] = set()
    for k in keys:
        v = sub.get(k)
        if isinstance(v, str) and v.strip():
            v = v.strip()
            values.add(v)
            values.add("".join(v.split()))  # 山田 太郎 written as 山田太郎
            if k in PERSON_KEYS:
                values.update(name_parts(v))
    if item.from_address:
        values.add(item.from_address)
        display, addr = parseaddr(item.from_address)
        if addr:
            values.add(addr)
            # hanako.sato@… : the words of the mailbox name are often the sender's name, romanised
            values.update(w for w in re.split(r"[._\-+]", addr.split("@", 1)[0]) if len(w) >= 3 and w.isalpha())
        if display:
            values.add(display)
            values.update(name_parts(display))
    return sorted((v for v in values if len(v) >= 2), key=len, reverse=True)


def name_parts(name: str) -> set[str]:
    """The parts of a person's name that identify them alone: each word of two characters or more (山田 of
    山田 太郎, Smith of John Smith); for a name written without a space, its first two characters (the most
    common length of a Japanese family name)."""
    words = _LETTERS.findall(name)
    parts = {w for w in words if len(w) >= 2}
    if len(words) == 1 and _CJK.match(words[0]) and len(words[0]) >= 3:
        parts.add(words[0][:2])
    return parts


def _value_pattern(value: str) -> str:
    """A value as a regex that also matches it with spaces between its characters, case-insensitively for
    Latin letters, and as a whole word when it is Latin (Smith, not Smithsonian)."""
    chars = [c for c in value if not c.isspace()]
    body = _GAP.join(re.escape(c) for c in chars)
    if chars and chars[0].isascii() and chars[0].isalnum():
        body = r"(?<![A-Za-z0-9])" + body
    if chars and chars[-1].isascii() and chars[-1].isalnum():
        body += r"(?![A-Za-z0-9])"
    return body


def redact(text: str, values: Iterable[str]) -> str:
    """`text` with the submitter's `values` and every mail address, phone number, postal code and street
    address masked (＊＊＊)."""
    vals = [v for v in values if v.strip()]
    if vals:
        rx = re.compile("|".join(_value_pattern(v) for v in sorted(vals, key=len, reverse=True)), re.IGNORECASE)
        text = rx.sub(MASK, text)
    out: list[str] = []
    last = 0
    for a, b in personal.spans(text):
        out.append(text[last:a])
        out.append(MASK)
        last = b
    out.append(text[last:])
    return _PHONE_RE.sub(MASK, "".join(out))


@dataclass
class ExportOptions:
    public: bool = False
    target_labels: dict[str, str] | None = None


def rows(items: Sequence[Item], opts: ExportOptions) -> list[list[Any]]:
    labels = opts.target_labels or {"main": "本編", "annex": "別添"}
    out: list[list[Any]] = []
    for n, it in enumerate(items, 1):
        location, text, summary = location_text(it), it.text, it.summary or ""
        if opts.public:
            private = private_values(it)
            location, text, summary = (redact(x, private) for x in (location, text, summary))
            who = public_submitter(it.submitter)
        else:
            who = staff_submitter(it.submitter)
        row = [n, it.record_id, jst_text(it.received_at), who, KIND_LABEL.get(it.kind, INDIVIDUAL),
               targets_label(it.targets, labels), location, text, summary, ",".join(it.flags), it.group or ""]
        if opts.public:
            row = [v for h, v in zip(HEADERS, row, strict=True) if h not in INTERNAL]
        out.append(row)
    return out


def headers_for(table: Sequence[Sequence[Any]], public: bool | None = None) -> list[str]:
    """The header row of a table made by `rows`: the public one has no internal columns."""
    if public is None:
        public = bool(table) and len(table[0]) == len(PUBLIC_HEADERS)
    return PUBLIC_HEADERS if public else HEADERS


# -- progress on a terminal ------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal and the export is long."""

    def __init__(self, total: int, label: str = "export", stream: IO[str] | None = None, minimum: int = 200) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.label = label
        self.enabled = total >= minimum and self.stream.isatty()
        self._last = -1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        pct = done * 100 // max(self.total, 1)
        if pct == self._last and done != self.total:
            return
        self._last = pct
        bar = "#" * (pct // 4) + "-" * (25 - pct // 4)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total}")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


# -- CSV -------------------------------------------------------------------------------------------
def write_csv(out: IO[str], table: Sequence[Sequence[Any]], progress: Callable[[int], None] | None = None,
              public: bool | None = None) -> None:
    w = SafeWriter(out)  # no cell is ever a formula (daemon/staff/csv_cells.py)
    w.writerow(headers_for(table, public))
    for i, row in enumerate(table, 1):
        w.writerow(row)
        if progress:
            progress(i)


def csv_bytes(table: Sequence[Sequence[Any]], encoding: str = "utf-8-sig", public: bool | None = None) -> bytes:
    buf = io.StringIO()
    write_csv(buf, table, public=public)
    return buf.getvalue().encode(encoding, errors="replace" if encoding == "cp932" else "strict")


# -- Excel -----------------------------------------------------------------------------------------
def _cell_text(value: Any) -> Any:
    return layout.cell_text(value)


def write_xlsx(path_or_stream: Any, table: Sequence[Sequence[Any]], stats: Stats | None, public: bool,
               progress: Callable[[int], None] | None = None) -> None:
    """The table as a sheet 「意見一覧」 made for paper as well as for the screen: A4 landscape fit to the page
    width, the header row on every page, thin borders, and rows as tall as their wrapped text."""
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = "意見一覧"
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDEBF7")
    top = Alignment(vertical="top")
    wrap = Alignment(vertical="top", wrap_text=True)
    border = layout.thin_border()
    heads = headers_for(table, public)
    width_of = dict(zip(HEADERS, WIDTHS, strict=True))
    widths = [float(width_of[h]) for h in heads]
    ws.append(heads)
    for c in ws[1]:
        c.font, c.fill, c.border = bold, fill, border
        c.alignment = Alignment(vertical="center", wrap_text=True)
    ws.row_dimensions[1].height = layout.row_height(zip(heads, widths, strict=True))
    wrapped = [h in WRAPPED for h in heads]
    for i, row in enumerate(table, 1):
        values = [_cell_text(v) for v in row]
        ws.append(values)
        for c, w in zip(ws[i + 1], wrapped, strict=True):
            c.alignment = wrap if w else top
            c.border = border
            if isinstance(c.value, str):
                c.data_type = "s"  # text, never a formula
        # Neither Excel nor LibreOffice grows a row to its text on open: without a height the 意見 is drawn
        # over the rows below. Unwrapped cells count as one line.
        ws.row_dimensions[i + 1].height = layout.row_height(
            (v if w else "", width) for v, w, width in zip(values, wrapped, widths, strict=True))
        if progress:
            progress(i)
    for n, width in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(n)].width = width
    ws.freeze_panes = "A2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(heads))}{len(table) + 1}"
    layout.print_setup(ws, "1:1")
    if stats is not None and not public:  # the 統計 sheet is the staff's: record ids, reasons, flags
        _stats_sheet(wb.create_sheet("統計"), stats, public, bold, fill)
    wb.save(path_or_stream)


def _stats_sheet(ws: Any, stats: Stats, public: bool, bold: Any, fill: Any) -> None:
    from openpyxl.styles import Alignment

    def head(*cells: str) -> None:
        ws.append(list(cells))
        for c in ws[ws.max_row]:
            c.font, c.fill = bold, fill

    ws.append(["提出者数・意見数", stats.tally.line()])
    ws["A1"].font = bold
    ws.append([])
    head("区分", "者")
    ws.append(["個人", stats.tally.individuals])
    ws.append(["法人・団体", stats.tally.organizations])
    ws.append(["計", stats.tally.submitters])
    ws.append(["意見（延べ件数）", stats.tally.items])
    ws.append([])
    head("状態", "件数")
    for k, v in stats.by_status.items():
        ws.append([k, v])
    ws.append([])
    head("理由 (reason)", "件数")
    for k, v in stats.by_reason.items():
        ws.append([k, v])
    ws.append([])
    head("flag", "件数")
    for k, v in stats.by_flag.items():
        ws.append([k, v])
    ws.append([])
    head("受付日 (JST)", "受信", "accepted", "rejected", "quarantined", "held", "duplicate")
    for day, c in stats.per_day:
        ws.append([day, c.total(), c["accepted"], c["rejected"], c["quarantined"], c["held"], c["duplicate"]])
    ws.append([])
    last = stats.per_day[-1][0] if stats.per_day and stats.per_day[-1][0] != "after" else ""
    head(f"最終日 {last} 時刻別", "受信", "accepted", "rejected", "quarantined", "held", "duplicate")
    for hour, c in stats.last_day_hours:
        ws.append([hour, c.total(), c["accepted"], c["rejected"], c["quarantined"], c["held"], c["duplicate"]])
    ws.append([])
    head("グループ", "件数", "同一/類似", "受付番号", "冒頭")
    for g in stats.groups:
        first = stats.items[g.members[0]]
        text = first.text
        if public:
            text = redact(text, private_values(first))
        ws.append([g.id, g.count, "同一" if g.identical else f"類似（{stats.threshold:.2f}以上）",
                   ", ".join(str(r) for r in sorted({stats.items[m].record_id for m in g.members})), excerpt(text)])
    ws.column_dimensions["A"].width = 26
    ws.column_dimensions["B"].width = 40
    for col in "CDEFG":
        ws.column_dimensions[col].width = 12
    ws.column_dimensions["E"].width = 40
    for row in ws.iter_rows():
        for c in row:
            c.alignment = Alignment(vertical="top", wrap_text=c.column_letter in ("B", "E"))
