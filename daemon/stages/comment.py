"""Comment analysis (R6–R11): pure functions over already-decoded text.

Given the decoded mail body and attachments (`TextSource`), find

* the submitter fields of the 意見書 (氏名, 名称, 代表者氏名, 住所/所在地, 郵便番号, 電話番号,
  電子メールアドレス, 連絡担当者), the submitter kind and a request for anonymity (R7, R11);
* the comment items (one per 該当箇所/意見 table row, per numbered section, or per labelled
  block), each with its targets (本編 / 別添), page references and 要旨 (R8, R9);
* the record flags.

Every label and marker comes from the rules file (`daemon.rules.CommentRules`, `Rules.comment`). Stored text is
kept exactly as written; normalized forms (NFKC, dash/tilde variants unified) are only used for
matching and as keys. Nothing here does I/O.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr
from functools import lru_cache
from typing import Any

from daemon.rules import COMMENT_LABEL_KINDS, FIELD_NAMES, CommentRules

__all__ = [
    "FIELD_NAMES",
    "FLAGS",
    "CommentItem",
    "CommentResult",
    "CommentRules",
    "TextSource",
    "analyze",
    "duplicate_key",
]

FLAGS = (
    "not_japanese",
    "missing_name",
    "missing_address",
    "missing_contact",
    "summary_missing",
    "target_missing",
    "page_missing",
    "empty",
)


# --------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class TextSource:
    source: str  # "body" or the attachment's file name
    text: str
    tables: Sequence[Sequence[Sequence[str]]] = ()  # rows of cells (Word/Excel tables)
    is_body: bool = False


@dataclass
class CommentItem:
    text: str  # as written
    targets: list[str]
    pages: list[str]  # as written, in order, deduplicated
    chars: int  # NFC, whitespace not counted
    summary: str | None
    location: str | None = None  # the 該当箇所 as written, when the item had one


@dataclass
class CommentResult:
    comments: list[CommentItem]
    submitter: dict[str, Any]
    flags: list[str]
    cover_letter: str | None


# --------------------------------------------------------------------------------------------
# normalization

_MATCH_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\ufe58\ufe63\uff0d"
_MATCH_TILDES = "\u301c\u223c\u223e\uff5e"
_MATCH_TABLE = str.maketrans({**dict.fromkeys(_MATCH_DASHES, "-"), **dict.fromkeys(_MATCH_TILDES, "~")})
# The duplicate key also folds the long-vowel mark (ｰ → ー) and box-drawing lines into "-".
_KEY_TABLE = str.maketrans(
    {
        **dict.fromkeys(_MATCH_DASHES + "\u30fc\u2500\u2501", "-"),
        **dict.fromkeys(_MATCH_TILDES, "~"),
    }
)
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")


def duplicate_key(text: str) -> str:
    """Key for duplicate/form-letter grouping: NFKC, dash and tilde variants unified, no whitespace."""
    t = unicodedata.normalize("NFKC", text).translate(_KEY_TABLE)
    return "".join(c for c in t if not c.isspace() and c not in _ZERO_WIDTH)


def _nfkc(s: str) -> str:
    return unicodedata.normalize("NFKC", s).translate(_MATCH_TABLE)


@dataclass
class _Norm:
    """A normalized view of `orig` whose positions map back to the original text."""

    orig: str
    norm: str
    starts: Sequence[int]
    ends: Sequence[int]

    def slice(self, a: int, b: int) -> str:
        if b <= a:
            return ""
        return self.orig[self.starts[a] : self.ends[b - 1]]

    def orig_pos(self, a: int) -> int:
        return self.starts[a] if a < len(self.starts) else len(self.orig)


@lru_cache(maxsize=4096)
def _nfkc_chunk(s: str) -> str:
    return _nfkc(s)


def _normalize(s: str) -> _Norm:
    whole = _nfkc(s)
    if whole == s:  # already normalized (most Japanese text): positions map one to one
        return _Norm(s, s, range(len(s)), range(1, len(s) + 1))
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i, n = 0, len(s)
    while i < n:
        j = i + 1
        while j < n and (unicodedata.combining(s[j]) or s[j] in "\uff9e\uff9f"):
            j += 1
        for c in _nfkc_chunk(s[i:j]):
            out.append(c)
            starts.append(i)
            ends.append(j)
        i = j
    return _Norm(s, "".join(out), starts, ends)


def _key(s: str) -> str:
    """Comparison key for labels and markers: NFKC, no whitespace, casefolded."""
    return re.sub(r"\s+", "", _nfkc(s)).casefold()


def _alternation(labels: Sequence[str]) -> str:
    keys = sorted({_key(lb) for lb in labels if _key(lb)}, key=lambda k: (-len(k), k))
    return "|".join(r"\s*".join(re.escape(c) for c in k) for k in keys)


def _chars(text: str) -> int:
    return sum(1 for c in unicodedata.normalize("NFC", text) if not c.isspace())


# --------------------------------------------------------------------------------------------
# compiled rules

_BULLETS = "・●○◎■□◆◇▼▽►▶*※-"
_OPENS = "【[(<〈《「『〔"
_CLOSES = "】])>〉》」』〕"
_URL_RE = re.compile(r"(?:https?|ftp)://[^\s<>\"'、。）)]+|www\.[^\s<>\"'、。）)]+", re.IGNORECASE)
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_POSTAL_RE = re.compile(r"(?:〒[ \t]*)?(\d{3}[ \t]*-?[ \t]*\d{4})(?!\d)")
_KANJI_NUM = "一二三四五六七八九十百〇"

_PAGE_PATTERNS = [
    re.compile(
        r"(?<![A-Za-z0-9])(?:pages?|pp|p)\.?[ \t]*\d+"
        r"(?:[ \t]*[-~][ \t]*(?:(?:pages?|pp|p)\.?[ \t]*)?\d+)?(?:[ \t]*(?:頁|ページ)目?)?",
        re.IGNORECASE,
    ),
    re.compile(r"(?<![0-9.])\d+(?:[ \t]*[-~][ \t]*\d+)?[ \t]*(?:頁|ページ)目?"),
    re.compile(rf"第[ \t]*[0-9{_KANJI_NUM}]+[ \t]*(?:章|節|項|部|編)"),
    re.compile(r"(?<![0-9.])\d+(?:\.\d+)*[ \t]*(?:章|節|項)(?!目)"),
]

# a cheap pre-filter: a line without any of these cannot hold a page reference
_PAGE_HINT = re.compile(r"[pPｐＰ頁ページ章節項部編]")

_NEGATIVE_ANSWERS = frozenset(
    _key(s) for s in ("なし", "無", "無し", "しない", "希望しない", "いいえ", "不要", "否", "×", "no", "-")
)
_POLITE_TAILS = frozenset(
    _key(s)
    for s in (
        "します", "いたします", "致します", "です", "でお願いします", "でお願いいたします",
        "でお願い致します", "とします", "とする", "とさせてください", "とさせていただきます",
        "を希望します", "を希望いたします", "にしてください", "願います", "希望", "でお願いしたい",
    )
)  # fmt: skip


@lru_cache(maxsize=8)
def compiled(rules: CommentRules) -> _Compiled:
    """The rules' labels and markers as regexes, built once per Rules object (a reload brings a new one)."""
    return _Compiled(rules)


class _Compiled:
    def __init__(self, rules: CommentRules) -> None:
        self.rules = rules
        self.field_kind: dict[str, str] = {}
        for name in FIELD_NAMES:
            for lb in rules.fields[name]:
                self.field_kind.setdefault(_key(lb), name)
        self.comment_kind: dict[str, str] = {}
        for kind in COMMENT_LABEL_KINDS:
            for lb in rules.comment_labels[kind]:
                self.comment_kind.setdefault(_key(lb), kind)
        all_labels = [lb for v in rules.fields.values() for lb in v] + [
            lb for v in rules.comment_labels.values() for lb in v
        ]
        field_alt = _alternation([lb for v in rules.fields.values() for lb in v])
        opinion_alt = _alternation(rules.comment_labels["opinion"])
        bullets = re.escape(_BULLETS)
        opens, closes = re.escape(_OPENS), re.escape(_CLOSES)
        self.line_re = re.compile(
            rf"^[ \t]*(?:[{bullets}][ \t]*)?(?P<open>[{opens}])?[ \t]*(?P<label>{_alternation(all_labels)})"
            rf"(?:[ \t]*\((?P<annot>[^()]{{0,30}})\))?(?:[ \t]*(?P<close>[{closes}]))?"
            r"(?P<gap>[ \t]*)(?P<sep>:)?[ \t]*(?P<value>.*)$",
            re.IGNORECASE,
        )
        # another field on the same line: "氏名：山田太郎　電話：03-…"
        self.inline_field_re = re.compile(
            rf"[ \t]+(?=[{opens}]?[ \t]*(?:{field_alt})[ \t]*(?:[{closes}]|:))", re.IGNORECASE
        )
        self.heading_bracket_re = re.compile(
            rf"^[ \t]*[{opens}][ \t]*(?:{opinion_alt})[ \t]*(?:その)?[ \t]*(?P<num>\d+|[{_KANJI_NUM}]+)"
            rf"[ \t]*[{closes}]",
            re.IGNORECASE,
        )
        self.heading_plain_re = re.compile(
            rf"^[ \t]*(?:[{bullets}][ \t]*)?(?:{opinion_alt})[ \t]*(?P<num>\d+)(?=$|[ \t:.、,)])"
            r"(?:[ \t]*[:.、,)])?",
            re.IGNORECASE,
        )
        self.heading_paren_re = re.compile(r"^[ \t]*\((?P<num>\d+)\)")
        self.target_res = [
            (name, re.compile(_alternation(aliases), re.IGNORECASE)) for name, aliases in rules.targets.items()
        ]
        self.org_markers = [_key(m) for m in rules.organization_markers]
        self.anon_markers = sorted({_key(m) for m in rules.anonymity_markers}, key=len, reverse=True)
        self.anon_re = re.compile(_alternation(rules.anonymity_markers), re.IGNORECASE)

    # ---- labels in table cells

    def cell_label(self, cell: str) -> tuple[str, str] | None:
        """("field"|"comment", kind) when the whole cell is a label, else None."""
        k = _key(cell)
        k = k.lstrip(_BULLETS)
        while k and k[0] in _OPENS and k[-1:] in _CLOSES:
            k = k[1:-1]
        k = k.rstrip(":")
        if k.endswith(")") and "(" in k[1:]:
            k = k[: k.index("(", 1)]
        for table, typ in ((self.field_kind, "field"), (self.comment_kind, "comment")):
            if k in table:
                return typ, table[k]
        best: tuple[int, str, str] | None = None
        for table, typ in ((self.field_kind, "field"), (self.comment_kind, "comment")):
            for lk, kind in table.items():
                if k.startswith(lk) and k[len(lk) :].startswith(("・", "/", "及び", "等", "(", "と")):
                    if best is None or len(lk) > best[0]:
                        best = (len(lk), typ, kind)
        return (best[1], best[2]) if best else None

    # ---- anonymity

    def anonymity(self, norm_text: str) -> bool | None:
        """True/False when the line/cell states (or declines) an anonymity request, else None."""
        if not self.anon_re.search(norm_text):
            return None
        s = norm_text.strip().lstrip(_BULLETS + _OPENS + " \t").rstrip("。.!！ \t" + _CLOSES)
        candidates = [s]
        if ":" in s:
            candidates.append(s.split(":", 1)[1].strip())
        for cand in candidates:
            ck = _key(cand)
            for marker in self.anon_markers:
                if not ck.startswith(marker):
                    continue
                rest = ck[len(marker) :]
                if rest == "" or rest.startswith("(") or rest in _POLITE_TAILS:
                    return True
                if rest.startswith(":"):
                    answer = rest[1:].strip(_OPENS + _CLOSES)
                    return bool(answer) and answer not in _NEGATIVE_ANSWERS
        return None

    def mentions_anonymity(self, value: str) -> bool:
        k = _key(value)
        return any(m in k for m in self.anon_markers)

    def is_organization_name(self, value: str) -> bool:
        k = _key(value)
        return any(m in k for m in self.org_markers)

    # ---- targets and pages

    def targets(self, text: str) -> list[str]:
        masked = _mask(_nfkc(text))
        return [name for name, rx in self.target_res if rx.search(masked)]


def _mask(s: str) -> str:
    if "://" not in s and "www." not in s and "@" not in s:
        return s
    s = _URL_RE.sub(lambda m: " " * len(m.group()), s)
    return _EMAIL_RE.sub(lambda m: " " * len(m.group()), s)


def _pages(text: str) -> list[str]:
    """Page/chapter references as written, in order of appearance, deduplicated (line by line)."""
    out: list[str] = []
    seen: set[str] = set()
    for line in text.splitlines():
        if not _PAGE_HINT.search(line):
            continue
        n = _normalize(line)
        masked = _mask(n.norm)
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
            k = _key(written)
            if written and k not in seen:
                seen.add(k)
                out.append(written)
    return out


# letters: any Unicode letter (\w without digits and "_"); Japanese: kana, kanji, 々〆ヶ
_LETTER_RE = re.compile(r"[^\W\d_]")
_JAPANESE_RE = re.compile(
    "[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff\u3005\u3006]"
)


def _japanese_share(text: str) -> float | None:
    """Share of kana/kanji among the letters (URLs and mail addresses ignored); None if no letters."""
    t = _mask(unicodedata.normalize("NFKC", text))
    letters = len(_LETTER_RE.findall(t))
    if not letters:
        return None
    return len(_JAPANESE_RE.findall(t)) / letters


# --------------------------------------------------------------------------------------------
# line classification


@dataclass
class _Line:
    orig: str  # without the line ending
    ending: str
    norm: _Norm
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


def _split_lines(text: str) -> list[_Line]:
    out: list[_Line] = []
    for raw in text.splitlines(keepends=True):
        body = raw.rstrip("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
        out.append(_Line(orig=body, ending=raw[len(body) :], norm=_normalize(body)))
    return out


def _match_label_line(c: _Compiled, n: _Norm) -> tuple[str, str, str, int, int] | None:
    """(typ, kind, strength, value_start, value_end) in normalized positions, or None."""
    m = c.line_re.match(n.norm)
    if m is None:
        return None
    k = _key(m.group("label"))
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


def _field_values(c: _Compiled, n: _Norm, first_kind: str, vs: int, ve: int) -> list[tuple[str, str]]:
    """The value of a field line, plus further fields on the same line."""
    out: list[tuple[str, str]] = []
    kind = first_kind
    while True:
        sub = c.inline_field_re.search(n.norm, vs, ve)
        end = sub.start() if sub else ve
        out.append((kind, n.slice(vs, end).strip()))
        if sub is None:
            return out
        rest = _Norm(n.orig, n.norm[sub.end() : ve], n.starts[sub.end() : ve], n.ends[sub.end() : ve])
        hit = _match_label_line(c, rest)
        if hit is None or hit[0] != "field":
            out[-1] = (kind, n.slice(vs, ve).strip())
            return out
        kind = hit[1]
        vs, ve = sub.end() + hit[3], sub.end() + hit[4]


def _row_fields(c: _Compiled, cells: Sequence[str]) -> tuple[list[tuple[str, str]], list[int]]:
    """Label cell → next cell. Returns (found fields, indexes of label cells left without value)."""
    found: list[tuple[str, str]] = []
    dangling: list[int] = []
    for i, cell in enumerate(cells):
        lab = c.cell_label(cell) if cell.strip() else None
        if lab is None or lab[0] != "field":
            continue
        value = ""
        for nxt in cells[i + 1 :]:
            if not nxt.strip() or _key(nxt) == _key(cell):
                continue  # empty or a merged copy of the label cell
            if c.cell_label(nxt) is None:
                value = nxt.strip()
            break
        if value:
            found.append((lab[1], value))
        else:
            dangling.append(i)
    return found, dangling


def _classify(c: _Compiled, lines: list[_Line], is_body: bool) -> None:
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
            found, _ = _row_fields(c, ln.orig.split("\t"))
            if len(found) > 1:  # "氏名<TAB>山田太郎<TAB>住所<TAB>東京都…"
                ln.kind, ln.strength, ln.fields = "field", "strong", found
                continue
        hit = _match_label_line(c, ln.norm)
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
    def neighbours(i: int) -> list[_Line]:
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
    v = _nfkc(value).strip()
    if not v or len(v) > 100:
        return False
    if name == "email":
        return "@" in v
    if name in ("phone", "postal_code"):
        return sum(ch.isdigit() for ch in v) >= 3
    return True


def _reset(ln: _Line, c: _Compiled) -> None:
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


def _accept_headings(lines: list[_Line]) -> bool:
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


# --------------------------------------------------------------------------------------------
# blocks → items


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
class _Parsed:
    items: list[CommentItem]
    whole_summary: str | None
    has_markers: bool


def _parse_text(c: _Compiled, lines: list[_Line], has_headings: bool) -> _Parsed:
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
        items.append(_make_item(c, text, location, summary, extra=()))
    has_markers = has_headings or any(ln.kind == "label" and ln.label_kind in ("location", "opinion") for ln in lines)
    return _Parsed(items, whole_summary, has_markers)


def _make_item(c: _Compiled, text: str, location: str | None, summary: str | None, extra: Sequence[str]) -> CommentItem:
    loc_text = "\n".join([location or "", *extra])
    targets = c.targets(loc_text) or c.targets(text) or (c.targets(summary) if summary else [])
    pages = _pages(loc_text) or _pages(text) or (_pages(summary) if summary else [])
    return CommentItem(text=text, targets=targets, pages=pages, chars=_chars(text), summary=summary, location=location)


# --------------------------------------------------------------------------------------------
# tables


def _cells(row: Sequence[Any]) -> list[str]:
    return ["" if v is None else str(v) for v in row]


def _comment_header(c: _Compiled, cells: list[str]) -> dict[str, list[int]] | None:
    cols: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        lab = c.cell_label(cell) if cell.strip() else None
        if lab is not None and lab[0] == "comment":
            if not any(_key(cells[j]) == _key(cell) for j in cols.get(lab[1], [])):
                cols.setdefault(lab[1], []).append(i)
    return cols if "location" in cols and "opinion" in cols else None


def _table_items(c: _Compiled, tables: Sequence[Sequence[Sequence[Any]]]) -> tuple[list[CommentItem], bool]:
    items: list[CommentItem] = []
    found = False
    for table in tables:
        cols: dict[str, list[int]] | None = None
        for row in table:
            cells = _cells(row)
            header = _comment_header(c, cells)
            if header is not None:
                cols, found = header, True
                continue
            if cols is None:
                continue

            def cell(i: int, cells: list[str] = cells) -> str:
                return cells[i].strip() if i < len(cells) else ""

            opinion = cell(cols["opinion"][0])
            reason = "\n".join(x for x in (cell(i) for i in cols.get("reason", [])) if x)
            if not opinion and not reason:
                continue
            text = "\n".join(x for x in (opinion, reason) if x)
            location = " ".join(x for x in (cell(i) for i in cols["location"]) if x) or None
            summary = "\n".join(x for x in (cell(i) for i in cols.get("summary", [])) if x) or None
            used = {i for v in cols.values() for i in v}
            extra = [cell(i) for i in range(len(cells)) if i not in used]
            items.append(_make_item(c, text, location, summary, extra))
    return items, found


def _table_fields(
    c: _Compiled, tables: Sequence[Sequence[Sequence[Any]]]
) -> tuple[list[tuple[str, str]], list[bool], str | None]:
    """Fields (label cell → value cell, or label row → value row), anonymity answers, a 要旨 row."""
    fields: list[tuple[str, str]] = []
    anon: list[bool] = []
    summary: str | None = None
    for table in tables:
        rows = [_cells(r) for r in table]
        for r, cells in enumerate(rows):
            found, dangling = _row_fields(c, cells)
            fields.extend(found)
            below = rows[r + 1] if r + 1 < len(rows) else []
            for i in dangling:
                if i < len(below) and below[i].strip() and c.cell_label(below[i]) is None:
                    lab = c.cell_label(cells[i])
                    if lab is not None:
                        fields.append((lab[1], below[i].strip()))
            for i, cellv in enumerate(cells):
                if not cellv.strip():
                    continue
                lab = c.cell_label(cellv)
                if lab == ("comment", "summary") and summary is None:
                    nxt = next((x.strip() for x in cells[i + 1 :] if x.strip() and _key(x) != _key(cellv)), "")
                    summary = nxt or None
                k = _key(cellv)
                if k in c.anon_markers and i + 1 < len(cells):
                    answer = _key(cells[i + 1]).strip(_OPENS + _CLOSES)
                    anon.append(bool(answer) and answer not in _NEGATIVE_ANSWERS)
                    continue
                a = c.anonymity(_nfkc(cellv))
                if a is not None:
                    anon.append(a)
    return fields, anon, summary


def _tab_tables(text: str) -> list[list[list[str]]]:
    """Runs of two or more consecutive tab-separated lines, as tables."""
    tables: list[list[list[str]]] = []
    run: list[list[str]] = []
    for line in [*text.splitlines(), ""]:
        if "\t" in line:
            run.append(line.split("\t"))
            continue
        if len(run) >= 2:
            tables.append(run)
        run = []
    return tables


def _tables_as_text(c: _Compiled, tables: Sequence[Sequence[Sequence[Any]]]) -> str:
    """A vertical form (label cell | value cell per row) as "label：value" lines."""
    out: list[str] = []
    for table in tables:
        skip_next = False
        for row in table:
            cells: list[str] = []
            for v in _cells(row):
                v = v.strip()
                if v and (not cells or _key(cells[-1]) != _key(v)):
                    cells.append(v)
            if skip_next or not cells:
                skip_next = False
                continue
            labels = [c.cell_label(v) for v in cells]
            if len(cells) >= 2 and all(lab is not None and lab[0] == "field" for lab in labels):
                skip_next = True  # a row of field labels, their values in the row below
                continue
            if len(cells) >= 2 and c.cell_label(cells[0]) is not None:
                out.append(f"{cells[0]}：" + "\n".join(cells[1:]))
            else:
                out.append("\n".join(cells))
            out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# one source


@dataclass
class _SourceInfo:
    src: TextSource
    items: list[CommentItem]
    whole_summary: str | None
    fields: list[tuple[str, str]]
    anon: list[bool]
    has_fields: bool
    has_comment_table: bool
    has_markers: bool
    has_text: bool


def _analyze_source(c: _Compiled, src: TextSource) -> _SourceInfo:
    lines = _split_lines(src.text or "")
    _classify(c, lines, src.is_body)
    has_headings = _accept_headings(lines)
    parsed = _parse_text(c, lines, has_headings)

    fields: list[tuple[str, str]] = []
    anon: list[bool] = []
    has_fields = False
    for ln in lines:
        if ln.kind == "field":
            has_fields = has_fields or ln.strength in ("strong", "alone")
            fields.extend((k, v) for k, v in ln.fields if v)
        if ln.anon is not None:
            anon.append(ln.anon)

    t_fields, t_anon, t_summary = _table_fields(c, src.tables)
    has_fields = has_fields or any(
        (lab := c.cell_label(v)) is not None and lab[0] == "field"
        for t in src.tables
        for row in t
        for v in _cells(row)
        if v.strip()
    )
    fields.extend(t_fields)
    anon.extend(t_anon)

    t_items, has_table = _table_items(c, src.tables)
    if not has_table and not src.tables:
        # a plain-text table: "該当箇所<TAB>意見<TAB>理由" and one tab-separated line per row
        t_items, has_table = _table_items(c, _tab_tables(src.text or ""))
    items = parsed.items
    whole_summary = parsed.whole_summary
    if has_table:
        # the comment table is the comment; the text (which may repeat the cells) only adds a 要旨
        items = t_items
        whole_summary = whole_summary or t_summary or next((i.summary for i in parsed.items if i.summary), None)
    elif not items and src.tables:
        t_lines = _split_lines(_tables_as_text(c, src.tables))
        _classify(c, t_lines, False)
        t_parsed = _parse_text(c, t_lines, _accept_headings(t_lines))
        items = t_parsed.items
        whole_summary = whole_summary or t_parsed.whole_summary
    whole_summary = whole_summary or t_summary
    return _SourceInfo(
        src=src,
        items=items,
        whole_summary=whole_summary,
        fields=fields,
        anon=anon,
        has_fields=has_fields,
        has_comment_table=has_table,
        has_markers=parsed.has_markers,
        has_text=bool((src.text or "").strip()) or any(v.strip() for t in src.tables for r in t for v in _cells(r)),
    )


# --------------------------------------------------------------------------------------------
# the stage


def analyze(sources: Sequence[TextSource], from_address: str | None, rules: CommentRules) -> CommentResult:
    c = compiled(rules)
    infos = [_analyze_source(c, s) for s in sources]
    bodies = [i for i in infos if i.src.is_body]
    atts = [i for i in infos if not i.src.is_body]

    # which attachments are the 意見書: field labels or a 該当箇所/意見 table; failing that,
    # numbered sections or 該当箇所/意見 labels
    docs = [a for a in atts if a.has_fields or a.has_comment_table] or [a for a in atts if a.has_markers]
    others = [a for a in atts if a not in docs]
    comment_sources: list[_SourceInfo] = []
    for group in ([d for d in docs if d.items], [b for b in bodies if b.items], [o for o in others if o.items]):
        if group:
            comment_sources = group
            break
    from_attachment = bool(comment_sources) and not comment_sources[0].src.is_body
    cover = next((b.src.source for b in bodies if b.has_text), None) if from_attachment else None

    items: list[CommentItem] = [it for s in comment_sources for it in s.items]
    whole = next((s.whole_summary for s in comment_sources if s.whole_summary), None)
    if whole is None and from_attachment:
        # a 要旨 in the cover letter (its own text, when it was read as a comment) applies to all
        whole = next((x for b in bodies for x in [b.whole_summary, *(i.summary for i in b.items)] if x), None)
    if whole is not None:
        for it in items:
            if it.summary is None:
                it.summary = whole

    # submitter fields: the 意見書 first, then the body, then any other attachment
    order: list[_SourceInfo] = []
    for s in [*comment_sources, *docs, *bodies, *others]:
        if s not in order:
            order.append(s)
    submitter: dict[str, Any] = {"kind": "unknown", **dict.fromkeys(FIELD_NAMES), "anonymous": False}
    for s in order:
        for k, v in s.fields:
            if submitter.get(k) is None and v:
                submitter[k] = v
    _complete_postal(submitter)
    anonymous = any(a for s in order for a in s.anon) or any(
        isinstance(v, str) and c.mentions_anonymity(v) for v in submitter.values()
    )
    if submitter["organization"] or submitter["representative"]:
        kind = "organization"
    elif submitter["name"] and c.is_organization_name(submitter["name"]):
        kind = "organization"
        submitter["organization"] = submitter["name"]
    elif submitter["name"]:
        kind = "individual"
    else:
        kind = "unknown"
    sender = _from_address(from_address)
    if submitter["email"] is None and submitter["phone"] is None and sender:
        submitter["email"] = sender
    submitter["kind"] = kind
    submitter["anonymous"] = anonymous

    flags: set[str] = set()
    for it in items:
        share = _japanese_share(it.text)
        if share is not None and share < rules.japanese_min_share:
            flags.add("not_japanese")
    if not (submitter["name"] or submitter["organization"]):
        flags.add("missing_name")
    if not submitter["address"]:
        flags.add("missing_address")
    if not (submitter["phone"] or submitter["email"]):
        flags.add("missing_contact")
    total = sum(it.chars for it in items)
    if total > rules.summary_threshold and not any(it.summary for it in items):
        flags.add("summary_missing")
    if items and any(not it.targets for it in items):
        flags.add("target_missing")
    if items and any(not it.pages for it in items):
        flags.add("page_missing")
    if not items:
        flags.add("empty")
    return CommentResult(
        comments=items,
        submitter=submitter,
        flags=[f for f in FLAGS if f in flags],
        cover_letter=cover,
    )


def _complete_postal(submitter: dict[str, Any]) -> None:
    """〒100-8926 東京都… : split a postal code off a 〒 line; take one out of the address."""
    postal = submitter.get("postal_code")
    if postal:
        n = _normalize(postal)
        m = _POSTAL_RE.match(n.norm.strip())
        if m:
            lead = len(n.norm) - len(n.norm.lstrip())
            code = n.slice(lead + m.start(1), lead + m.end(1))
            rest = n.slice(lead + m.end(), len(n.norm)).strip()
            if rest:
                submitter["postal_code"] = code
                if not submitter.get("address"):
                    submitter["address"] = rest
    elif submitter.get("address"):
        n = _normalize(submitter["address"])
        m = re.search(r"〒[ \t]*(\d{3}[ \t]*-?[ \t]*\d{4})(?!\d)", n.norm)
        if m:
            submitter["postal_code"] = n.slice(m.start(1), m.end(1))


def _from_address(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    addr = parseaddr(value)[1]
    return addr if "@" in addr else None


# -- the pipeline stage -------------------------------------------------------------------------------
def comment_stage(work: Any, rules: CommentRules) -> None:
    """Read the comment out of the texts the extract stage left on `work` (daemon.model.Work)."""
    import hashlib

    result = analyze(work.sources, work.from_address, rules)
    work.result["comments"] = [
        {"text": c.text, "targets": c.targets, "pages": c.pages, "chars": c.chars, "summary": c.summary,
         "location": c.location}
        for c in result.comments
    ]
    work.result["submitter"] = result.submitter
    work.result["cover_letter"] = result.cover_letter
    for flag in result.flags:
        work.add_flag(flag)
    keys = {duplicate_key(c.text) for c in result.comments}
    work.comment_keys = sorted(hashlib.sha256(k.encode()).hexdigest() for k in keys if k)
