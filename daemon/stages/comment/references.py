"""What an item refers to: page and chapter references as written, and the item built with its targets.

An item's 該当箇所 (and any unlabelled table cells beside it) decides its targets and pages; failing that,
its text; failing that, its 要旨.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .labels import KANJI_NUM, Compiled
from .model import CommentItem
from .normalize import count_chars, label_key, mask_links, normalize

_PAGE_PATTERNS = [
    re.compile(
        r"(?<![A-Za-z0-9])(?:pages?|pp|p)\.?[ \t]*\d+"
        r"(?:[ \t]*[-~][ \t]*(?:(?:pages?|pp|p)\.?[ \t]*)?\d+)?(?:[ \t]*(?:頁|ページ)目?)?",
        re.IGNORECASE,
    ),
    re.compile(r"(?<![0-9.])\d+(?:[ \t]*[-~][ \t]*\d+)?[ \t]*(?:頁|ページ)目?"),
    re.compile(rf"第[ \t]*[0-9{KANJI_NUM}]+[ \t]*(?:章|節|項|部|編)"),
    re.compile(r"(?<![0-9.])\d+(?:\.\d+)*[ \t]*(?:章|節|項)(?!目)"),
]

# a cheap pre-filter: a line without any of these cannot hold a page reference
_PAGE_HINT = re.compile(r"[pPｐＰ頁ページ章節項部編]")


def page_refs(text: str) -> list[str]:
    """Page/chapter references as written, in order of appearance, deduplicated (line by line)."""
    out: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        if not _PAGE_HINT.search(line):
            continue
        n = normalize(line)
        masked = mask_links(n.norm)
        spans: list[tuple[int, int]] = []
        for rx in _PAGE_PATTERNS:
            spans.extend(m.span() for m in rx.finditer(masked))
        spans.sort(key=lambda sp: (sp[0], -(sp[1] - sp[0])))
        end = -1
        for a, b in spans:
            if a < end:
                continue
            end = b
            written = n.slice(a, b).strip()
            k = label_key(written)
            if written and k not in seen:
                seen.add(k)
                out.append(written)
    return out


def make_item(c: Compiled, text: str, location: str | None, summary: str | None, extra: Sequence[str]) -> CommentItem:
    """An item with its targets and pages: from the 該当箇所 and `extra` cells, else the text, else the 要旨."""
    loc_text = "\n".join([location or "", *extra])
    targets = c.targets(loc_text) or c.targets(text) or (c.targets(summary) if summary else [])
    pages = page_refs(loc_text) or page_refs(text) or (page_refs(summary) if summary else [])
    return CommentItem(
        text=text, targets=targets, pages=pages, chars=count_chars(text), summary=summary, location=location
    )
