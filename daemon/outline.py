"""The draft's outline (rules/ [outline]): the sections of the result document, and where a comment item goes.

Each section names a target (本編 or 別添), the pages it covers and/or its section numbers. An item is placed
from what it refers to (its 該当箇所 as the comment stage found it: targets and page references such as
P.12, 12頁, p.3-5, 第2章, 2.1節): a page inside a section's range, else a section number (the longest
number that the reference starts with: 2.1.3項 goes to 2.1 before 2). Only sections of the item's targets
are considered when it names any. An item that fits nowhere goes to 「その他・全般」 (`OTHER`), which is
always the last section. Staff may move any row afterwards (daemon/staff/review.py).

The table is optional: without it every item lands in 「その他・全般」, and the result document has one section.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OTHER = "other"  # the id of 「その他・全般」
DEFAULT_OTHER_TITLE = "その他・全般"
_KANJI = {"〇": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_RANGE = re.compile(r"^\s*(\d+)\s*(?:[-~〜～]\s*(\d+))?\s*$")
_NUMBER = re.compile(r"^\d+(?:\.\d+)*$")
# A page reference: P.12, p12-15, 12頁, 12ページ, pp.3~5 (after NFKC).
_PAGE_REF = re.compile(r"(?:(?:pages?|pp|p)\.?\s*(\d+)(?:\s*[-~]\s*(?:(?:pages?|pp|p)\.?\s*)?(\d+))?)"
                       r"|(?:(\d+)(?:\s*[-~]\s*(\d+))?\s*(?:頁|ページ))", re.IGNORECASE)
# A section reference: 第2章, 第二章, 2.1節, 3章, 第3.2項
_SECTION_REF = re.compile(r"第?\s*([0-9〇零一二三四五六七八九十百]+(?:\.[0-9]+)*)\s*(?:章|節|項|部|編)")


class OutlineError(ValueError):
    """A bad [outline] table; str() is '<dotted key>: <problem>' (the rules loader adds the file)."""


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    target: str | None  # main | annex | None (any)
    pages: tuple[tuple[int, int], ...]  # inclusive ranges
    numbers: tuple[str, ...]  # 2, 2.1 …


@dataclass(frozen=True)
class Outline:
    sections: tuple[Section, ...] = ()
    other_title: str = DEFAULT_OTHER_TITLE

    @property
    def order(self) -> list[tuple[str, str]]:
        """(id, title) of every section in document order, 「その他・全般」 last."""
        return [(s.id, s.title) for s in self.sections] + [(OTHER, self.other_title)]

    def title_of(self, section_id: str) -> str:
        return dict(self.order).get(section_id, self.other_title)

    def place(self, targets: Sequence[str], refs: Sequence[str]) -> str:
        """The section id for an item with these targets and page/section references (as written)."""
        candidates = [s for s in self.sections if not targets or s.target is None or s.target in targets]
        pages = [p for r in refs for p in page_numbers(r)]
        for page in pages:
            for s in candidates:
                if any(a <= page <= b for a, b in s.pages):
                    return s.id
        best: tuple[int, str] | None = None
        for number in (n for r in refs for n in section_numbers(r)):
            for s in candidates:
                for own in s.numbers:
                    if (number == own or number.startswith(own + ".")) and (best is None or len(own) > best[0]):
                        best = (len(own), s.id)
        return best[1] if best else OTHER


def _kanji_number(text: str) -> int | None:
    """一 … 九十九 (and digits); None when it is not a number."""
    if text.isdigit():
        return int(text)
    total, digit = 0, None
    for ch in text:
        if ch in _KANJI:
            digit = _KANJI[ch]
        elif ch == "十":
            total += (digit or 1) * 10
            digit = None
        elif ch == "百":
            total += (digit or 1) * 100
            digit = None
        else:
            return None
    return total + (digit or 0)


def page_numbers(ref: str) -> list[int]:
    """The pages a reference names: 'P.12' → [12]; 'p.3-5' → [3, 4, 5] (a range of at most 50 pages)."""
    out: list[int] = []
    for m in _PAGE_REF.finditer(unicodedata.normalize("NFKC", ref)):
        a = m.group(1) or m.group(3)
        b = m.group(2) or m.group(4)
        start = int(a)
        end = int(b) if b else start
        if end < start or end - start > 50:
            end = start
        out.extend(range(start, end + 1))
    return out


def section_numbers(ref: str) -> list[str]:
    """The section numbers a reference names: '第二章' → ['2']; '2.1節' → ['2.1']."""
    out: list[str] = []
    for m in _SECTION_REF.finditer(unicodedata.normalize("NFKC", ref)):
        head, _, rest = m.group(1).partition(".")
        n = _kanji_number(head)
        if n is not None:
            out.append(str(n) + ("." + rest if rest else ""))
    return out


# -- reading the table -----------------------------------------------------------------------------
def _ranges(value: Any, key: str) -> tuple[tuple[int, int], ...]:
    values = value if isinstance(value, list) else [value]
    out: list[tuple[int, int]] = []
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            out.append((v, v))
            continue
        m = _RANGE.match(v) if isinstance(v, str) else None
        if m is None:
            raise OutlineError(f"{key}: {v!r} is not a page or a range such as \"12-18\"")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if a < 1 or b < a:
            raise OutlineError(f"{key}: {v!r}: a range runs from a first page to a later one")
        out.append((a, b))
    return tuple(out)


def parse_outline(data: Mapping[str, Any], targets: Sequence[str]) -> Outline:
    """Validate the [outline] table (absent: an empty outline). Keys: other_title, sections = [{id, title,
    target, pages, numbers}]."""
    table = data.get("outline")
    if table is None:
        return Outline()
    if not isinstance(table, Mapping):
        raise OutlineError("outline: must be a table")
    for key in table:
        if key not in ("other_title", "sections"):
            raise OutlineError(f"outline.{key}: unknown key (known: other_title, sections)")
    other = table.get("other_title", DEFAULT_OTHER_TITLE)
    if not isinstance(other, str) or not other.strip():
        raise OutlineError("outline.other_title: must be a non-empty string")
    raw_sections = table.get("sections", [])
    if not isinstance(raw_sections, list):
        raise OutlineError("outline.sections: must be a list of tables ([[outline.sections]])")
    sections: list[Section] = []
    seen: set[str] = {OTHER}
    for n, entry in enumerate(raw_sections, 1):
        key = f"outline.sections[{n}]"
        if not isinstance(entry, Mapping):
            raise OutlineError(f"{key}: must be a table")
        for k in entry:
            if k not in ("id", "title", "target", "pages", "numbers"):
                raise OutlineError(f"{key}.{k}: unknown key (known: id, title, target, pages, numbers)")
        sid = entry.get("id")
        if not isinstance(sid, str) or not _ID.match(sid):
            raise OutlineError(f"{key}.id: must be a short id of a-z, 0-9, - and _ (e.g. \"main-2\")")
        if sid in seen:
            raise OutlineError(f"{key}.id: {sid!r} is used twice (or is the reserved id {OTHER!r})")
        seen.add(sid)
        title = entry.get("title")
        if not isinstance(title, str) or not title.strip():
            raise OutlineError(f"{key}.title: must be a non-empty string")
        target = entry.get("target")
        if target is not None and target not in targets:
            raise OutlineError(f"{key}.target: {target!r} is not one of the targets ({', '.join(targets)})")
        pages = _ranges(entry["pages"], f"{key}.pages") if "pages" in entry else ()
        numbers_raw = entry.get("numbers", [])
        if not isinstance(numbers_raw, list) or not all(isinstance(x, str) and _NUMBER.match(x) for x in numbers_raw):
            raise OutlineError(f"{key}.numbers: must be a list of section numbers such as [\"2\", \"2.1\"]")
        if not pages and not numbers_raw:
            raise OutlineError(f"{key}: give pages, numbers or both, so that comments can be placed in it")
        sections.append(Section(id=sid, title=title.strip(), target=target, pages=pages,
                                numbers=tuple(numbers_raw)))
    return Outline(sections=tuple(sections), other_title=other.strip())
