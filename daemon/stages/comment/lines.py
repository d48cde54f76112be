"""Line classification: each line of a text as blank, text, field, field value, anonymity, heading or label.

A field line ("氏名：山田太郎", also several fields on one line or tab-separated) yields submitter fields;
a label line ("【該当箇所】", "意見：…") starts a part of an item; a heading ("【意見1】", "(1)", "①")
may start an item. Weak candidates (a label followed only by spaces) count only beside another field
line, and numbered headings count only as a run 1, 2, … of one style.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from .labels import Compiled, row_fields
from .normalize import Norm, label_key, nfkc, normalize


@dataclass
class Line:
    """One line as written, its normalized view, and what `classify_lines` found it to be."""

    orig: str  # without the line ending
    ending: str
    norm: Norm
    kind: str = "text"  # blank, text, field, field_value, anon, heading, label
    label_kind: str | None = None  # comment label kind for "label"
    strength: str = ""  # field/label: strong, alone, weak
    fields: list[tuple[str, str]] = field(default_factory=list)
    rest_start: int = 0  # orig index of the content after a heading/label marker
    heading: tuple[str, int] | None = None  # (style, number) candidate
    heading_rest: int = 0
    anon: bool | None = None
    in_signature: bool = False

    def rest(self) -> str:
        return self.orig[self.rest_start :]


def split_lines(text: str) -> list[Line]:
    """The text's lines, each without its ending (kept apart so that parts can be joined back as written)."""
    out: list[Line] = []
    for raw in text.splitlines(keepends=True):
        body = raw.rstrip("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
        out.append(Line(orig=body, ending=raw[len(body) :], norm=normalize(body)))
    return out


def match_label_line(c: Compiled, n: Norm) -> tuple[str, str, str, int, int] | None:
    """(typ, kind, strength, value_start, value_end) in normalized positions, or None."""
    m = c.line_re.match(n.norm)
    if m is None:
        return None
    k = label_key(m.group("label"))
    if k in c.field_kind:
        typ, kind = "field", c.field_kind[k]
    elif k in c.comment_kind:
        typ, kind = "comment", c.comment_kind[k]
    else:  # pragma: no cover - the alternation only holds known labels
        return None
    opened, closed = m.group("open"), m.group("close")
    if bool(opened) != bool(closed):
        return None
    value = m.group("value")
    vs, ve = m.span("value")
    if opened or m.group("sep") or "\t" in m.group("gap"):
        strength = "strong"
    elif not value.strip():
        strength = "alone"
    elif m.group("gap"):
        strength = "weak"
    elif typ == "field" and kind in ("postal_code", "phone") and value[:1].isdigit():
        strength = "strong"  # 〒100-8926 / 電話03-…
    else:
        return None
    if strength == "weak" and (typ == "comment" and kind != "location"):
        return None
    if strength == "weak" and len(value.strip()) > 60:
        return None
    if typ == "comment" and kind == "opinion" and value[:1].isdigit():
        return None  # "意見 1" is a heading, not a label
    return typ, kind, strength, vs, ve


def _field_values(c: Compiled, n: Norm, first_kind: str, vs: int, ve: int) -> list[tuple[str, str]]:
    """The value of a field line, plus further fields on the same line."""
    out: list[tuple[str, str]] = []
    kind = first_kind
    while True:
        sub = c.inline_field_re.search(n.norm, vs, ve)
        end = sub.start() if sub else ve
        out.append((kind, n.slice(vs, end).strip()))
        if sub is None:
            return out
        rest = Norm(n.orig, n.norm[sub.end() : ve], n.starts[sub.end() : ve], n.ends[sub.end() : ve])
        hit = match_label_line(c, rest)
        if hit is None or hit[0] != "field":
            out[-1] = (kind, n.slice(vs, ve).strip())
            return out
        kind = hit[1]
        vs, ve = sub.end() + hit[3], sub.end() + hit[4]


def classify_lines(c: Compiled, lines: list[Line], is_body: bool) -> None:
    """Set each line's kind in place; in the body, the lines from a "-- " signature separator on are marked."""
    in_sig = False
    for ln in lines:
        if is_body and ln.orig in ("-- ", "--"):
            in_sig = True
        ln.in_signature = in_sig
        if not ln.orig.strip():
            ln.kind = "blank"
            continue
        norm = ln.norm.norm
        m = c.heading_bracket_re.match(norm) or c.heading_plain_re.match(norm)
        if m:
            ln.kind = "heading"
            ln.heading = ("opinion", _heading_num(m.group("num")))
            ln.heading_rest = ln.norm.orig_pos(m.end())
            continue
        m = c.heading_paren_re.match(norm)
        stripped = ln.orig.lstrip(" \t\u3000")
        if m:
            ln.heading = ("paren", int(m.group("num")))
            ln.heading_rest = ln.norm.orig_pos(m.end())
        elif stripped and ("\u2460" <= stripped[0] <= "\u2473" or "\u3251" <= stripped[0] <= "\u325f"):
            ln.heading = ("circled", int(unicodedata.numeric(stripped[0])))
            ln.heading_rest = len(ln.orig) - len(stripped) + 1
        if "\t" in ln.orig:
            found, _ = row_fields(c, ln.orig.split("\t"))
            if len(found) > 1:  # "氏名<TAB>山田太郎<TAB>住所<TAB>東京都…"
                ln.kind, ln.strength, ln.fields = "field", "strong", found
                continue
        hit = match_label_line(c, ln.norm)
        if hit is not None:
            typ, kind, strength, vs, ve = hit
            if typ == "field":
                ln.kind, ln.strength = "field", strength
                ln.fields = _field_values(c, ln.norm, kind, vs, ve)
                anon = [c.mentions_anonymity(v) for _, v in ln.fields]
                ln.anon = True if any(anon) else None
            else:
                ln.kind, ln.strength, ln.label_kind = "label", strength, kind
                ln.rest_start = ln.norm.orig_pos(vs)
            continue
        anon = c.anonymity(norm)
        if anon is not None:
            ln.kind, ln.anon = "anon", anon

    # a label followed only by spaces counts when it stands beside another field line
    def neighbours(i: int) -> list[Line]:
        out = []
        for rng in (range(i - 1, -1, -1), range(i + 1, len(lines))):
            for j in rng:
                if lines[j].kind != "blank":
                    out.append(lines[j])
                    break
        return out

    weak = [
        i for i, ln in enumerate(lines) if ln.strength == "weak" and not any(nb.kind == "field" for nb in neighbours(i))
    ]
    for i in weak:
        _reset(lines[i], c)
    # a field with an empty value takes the next line as its value ("氏名" / "山田太郎")
    for i, ln in enumerate(lines):
        if ln.kind != "field" or any(v for _, v in ln.fields) or len(ln.fields) != 1:
            continue
        nxt = next((lines[j] for j in range(i + 1, len(lines)) if lines[j].kind != "blank"), None)
        name = ln.fields[0][0]
        if nxt is not None and nxt.kind == "text" and nxt.heading is None and _plausible(name, nxt.orig):
            ln.fields = [(name, nxt.orig.strip())]
            nxt.kind = "field_value"
    for ln in lines:
        if ln.kind == "label" and ln.strength == "weak":
            ln.strength = "strong"


def _plausible(name: str, value: str) -> bool:
    """Whether a line on its own can be the value of the field label above it."""
    v = nfkc(value).strip()
    if not v or len(v) > 100:
        return False
    if name == "email":
        return "@" in v
    if name in ("phone", "postal_code"):
        return sum(ch.isdigit() for ch in v) >= 3
    return True


def _reset(ln: Line, c: Compiled) -> None:
    ln.kind, ln.strength, ln.fields, ln.anon = "text", "", [], None
    anon = c.anonymity(ln.norm.norm)
    if anon is not None:
        ln.kind, ln.anon = "anon", anon


def _heading_num(s: str) -> int:
    if s.isdigit():
        return int(s)
    digits = {ch: i for i, ch in enumerate("〇一二三四五六七八九")}
    if s == "十":
        return 10
    if "十" in s:
        tens, _, ones = s.partition("十")
        return digits.get(tens, 1) * 10 + digits.get(ones, 0)
    total = 0
    for ch in s:
        total = total * 10 + digits.get(ch, 0)
    return total


def accept_headings(lines: list[Line]) -> bool:
    """Decide which heading candidates split the text into items; True when any does."""
    if any(ln.kind == "heading" for ln in lines):
        for ln in lines:
            if ln.kind != "heading":
                ln.heading = None
        return True
    cands = [(i, ln.heading) for i, ln in enumerate(lines) if ln.heading and ln.kind in ("text", "anon")]
    style = next((h[0] for _, h in cands if h[1] == 1), None)
    accepted: list[int] = []
    expected = 1
    for i, (st, num) in cands:
        if st == style and num == expected:
            accepted.append(i)
            expected += 1
    keep = set(accepted) if len(accepted) >= 2 else set()
    for i, ln in enumerate(lines):
        if i in keep:
            ln.kind = "heading"
        else:
            ln.heading = None
    return bool(keep)
