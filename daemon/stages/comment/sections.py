"""Classified lines → comment items: split at headings or 該当箇所/意見 labels into blocks, one item per block.

Each block collects its parts as written (text, 該当箇所, 要旨); a 要旨 before the first block applies to
every item of the text. Reading stops at a mail signature ("-- ").
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .labels import Compiled
from .lines import Line
from .model import CommentItem
from .references import make_item


@dataclass
class _Block:
    is_preamble: bool = False
    segs: list[tuple[str, str]] = field(default_factory=list)  # (part, text as written)
    labels: set[str] = field(default_factory=set)

    def add(self, part: str, text: str) -> None:
        self.segs.append((part, text))

    def part(self, part: str) -> str:
        return _trim("".join(t for p, t in self.segs if p == part))


def _trim(s: str) -> str:
    lines = s.splitlines(keepends=True)
    while lines and not lines[0].strip():
        lines.pop(0)
    return "".join(lines).rstrip()


@dataclass
class Parsed:
    items: list[CommentItem]
    whole_summary: str | None
    has_markers: bool


def parse_text(c: Compiled, lines: list[Line], has_headings: bool) -> Parsed:
    preamble = _Block(is_preamble=True)
    blocks: list[_Block] = []
    cur = preamble
    state = "text"
    state_has_content = False
    starter: str | None = None
    for ln in lines:
        if ln.in_signature:
            break
        kind = ln.kind
        if kind == "heading":
            cur = _Block()
            blocks.append(cur)
            state, state_has_content = "text", False
            rest = ln.orig[ln.heading_rest :].lstrip(" \t\u3000")
            if rest.strip():
                cur.add("text", rest + ln.ending)
            continue
        if kind in ("field", "field_value", "anon"):
            if state != "text":
                state, state_has_content = "text", False
            continue
        if kind == "blank":
            if state == "text":
                cur.add("text", ln.orig + ln.ending)
            elif state_has_content:  # a 該当箇所 / 要旨 part ends at a blank line
                state, state_has_content = "text", False
                cur.add("text", ln.orig + ln.ending)
            continue
        if kind == "label":
            lk = ln.label_kind or ""
            if lk in ("location", "opinion") and not has_headings:
                starter = starter or lk
                if cur.is_preamble or lk == starter or lk in cur.labels:
                    cur = _Block()
                    blocks.append(cur)
            cur.labels.add(lk)
            rest = ln.rest()
            if lk == "reason":
                state, state_has_content = "text", False
                cur.add("text", ln.orig + ln.ending)
                continue
            part = {"location": "location", "summary": "summary"}.get(lk, "text")
            if part != "text" and rest.strip():
                # "該当箇所：本編 P.3" / "要旨：…": the part is this one line
                cur.add(part, rest + ln.ending)
                state, state_has_content = "text", False
                continue
            # a bare "【該当箇所】" / "【要旨】" collects the lines below it up to a blank line
            state, state_has_content = part, False
            if rest.strip():
                cur.add(state, rest + ln.ending)
            continue
        # plain text
        cur.add(state, ln.orig + ln.ending)
        if state != "text":
            state_has_content = True

    whole_summary = preamble.part("summary") or None
    if has_headings or len(blocks) >= 2:
        item_blocks = blocks
    elif len(blocks) == 1:
        merged = _Block(segs=preamble.segs + blocks[0].segs, labels=blocks[0].labels)
        item_blocks = [merged]
        whole_summary = None
    else:
        item_blocks = [preamble]
        whole_summary = None
    items: list[CommentItem] = []
    for b in item_blocks:
        text = b.part("text")
        summary = b.part("summary") or None
        if not text.strip():
            whole_summary = whole_summary or summary
            continue
        location = b.part("location") or None
        items.append(make_item(c, text, location, summary, extra=()))
    has_markers = has_headings or any(ln.kind == "label" and ln.label_kind in ("location", "opinion") for ln in lines)
    return Parsed(items, whole_summary, has_markers)
