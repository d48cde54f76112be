"""The rules' labels and markers compiled into regexes and lookup tables (`Compiled`, `compiled()`).

Every label and marker comes from the rules file (`daemon.rules.CommentRules`, `Rules.comment`); this
module turns them into what the line, table and submitter readers match against: field and comment
labels on a line or in a table cell, 意見 headings, targets (本編 / 別添), organisation and anonymity
markers. Built once per rules object, so a reload (a new object) brings new regexes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from daemon.rules import COMMENT_LABEL_KINDS, FIELD_NAMES, CommentRules

from .normalize import alternation, label_key, mask_links, nfkc

# what may stand before a label ("・氏名", "【意見】") and the brackets around it
BULLETS = "・●○◎■□◆◇▼▽►▶*※-"
OPENS = "【[(<〈《「『〔"
CLOSES = "】])>〉》」』〕"
KANJI_NUM = "一二三四五六七八九十百〇"  # numbers of 意見 headings and 第…章 references

# answers to an anonymity question that decline it, and the polite endings of a request that make it
NEGATIVE_ANSWERS = frozenset(
    label_key(s) for s in ("なし", "無", "無し", "しない", "希望しない", "いいえ", "不要", "否", "×", "no", "-")
)
_POLITE_TAILS = frozenset(
    label_key(s)
    for s in (
        "します", "いたします", "致します", "です", "でお願いします", "でお願いいたします",
        "でお願い致します", "とします", "とする", "とさせてください", "とさせていただきます",
        "を希望します", "を希望いたします", "にしてください", "願います", "希望", "でお願いしたい",
    )
)  # fmt: skip


@lru_cache(maxsize=8)
def compiled(rules: CommentRules) -> Compiled:
    """The rules' labels and markers as regexes, built once per Rules object (a reload brings a new one)."""
    return Compiled(rules)


class Compiled:
    """One rules object's labels and markers, ready to match; get it through `compiled()`."""

    def __init__(self, rules: CommentRules) -> None:
        self.rules = rules
        self.field_kind: dict[str, str] = {}
        for name in FIELD_NAMES:
            for lb in rules.fields[name]:
                self.field_kind.setdefault(label_key(lb), name)
        self.comment_kind: dict[str, str] = {}
        for kind in COMMENT_LABEL_KINDS:
            for lb in rules.comment_labels[kind]:
                self.comment_kind.setdefault(label_key(lb), kind)
        all_labels = [lb for v in rules.fields.values() for lb in v] + [
            lb for v in rules.comment_labels.values() for lb in v
        ]
        field_alt = alternation([lb for v in rules.fields.values() for lb in v])
        opinion_alt = alternation(rules.comment_labels["opinion"])
        bullets = re.escape(BULLETS)
        opens, closes = re.escape(OPENS), re.escape(CLOSES)
        self.line_re = re.compile(
            rf"^[ \t]*(?:[{bullets}][ \t]*)?(?P<open>[{opens}])?[ \t]*(?P<label>{alternation(all_labels)})"
            rf"(?:[ \t]*\((?P<annot>[^()]{{0,30}})\))?(?:[ \t]*(?P<close>[{closes}]))?"
            r"(?P<gap>[ \t]*)(?P<sep>:)?[ \t]*(?P<value>.*)$",
            re.IGNORECASE,
        )
        # another field on the same line: "氏名：山田太郎　電話：03-…"
        self.inline_field_re = re.compile(
            rf"[ \t]+(?=[{opens}]?[ \t]*(?:{field_alt})[ \t]*(?:[{closes}]|:))", re.IGNORECASE
        )
        self.heading_bracket_re = re.compile(
            rf"^[ \t]*[{opens}][ \t]*(?:{opinion_alt})[ \t]*(?:その)?[ \t]*(?P<num>\d+|[{KANJI_NUM}]+)"
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
            (name, re.compile(alternation(aliases), re.IGNORECASE)) for name, aliases in rules.targets.items()
        ]
        self.org_markers = [label_key(m) for m in rules.organization_markers]
        self.anon_markers = sorted({label_key(m) for m in rules.anonymity_markers}, key=len, reverse=True)
        self.anon_re = re.compile(alternation(rules.anonymity_markers), re.IGNORECASE)

    # ---- labels in table cells

    def cell_label(self, cell: str) -> tuple[str, str] | None:
        """("field"|"comment", kind) when the whole cell is a label, else None."""
        k = label_key(cell)
        k = k.lstrip(BULLETS)
        while k and k[0] in OPENS and k[-1:] in CLOSES:
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
        s = norm_text.strip().lstrip(BULLETS + OPENS + " \t").rstrip("。.!！ \t" + CLOSES)
        candidates = [s]
        if ":" in s:
            candidates.append(s.split(":", 1)[1].strip())
        for cand in candidates:
            ck = label_key(cand)
            for marker in self.anon_markers:
                if not ck.startswith(marker):
                    continue
                rest = ck[len(marker) :]
                if rest == "" or rest.startswith("(") or rest in _POLITE_TAILS:
                    return True
                if rest.startswith(":"):
                    answer = rest[1:].strip(OPENS + CLOSES)
                    return bool(answer) and answer not in NEGATIVE_ANSWERS
        return None

    def mentions_anonymity(self, value: str) -> bool:
        k = label_key(value)
        return any(m in k for m in self.anon_markers)

    def is_organization_name(self, value: str) -> bool:
        k = label_key(value)
        return any(m in k for m in self.org_markers)

    # ---- targets and pages

    def targets(self, text: str) -> list[str]:
        masked = mask_links(nfkc(text))
        return [name for name, rx in self.target_res if rx.search(masked)]


def row_fields(c: Compiled, cells: Sequence[str]) -> tuple[list[tuple[str, str]], list[int]]:
    """Label cell → next cell. Returns (found fields, indexes of label cells left without value)."""
    found: list[tuple[str, str]] = []
    dangling: list[int] = []
    for i, cell in enumerate(cells):
        lab = c.cell_label(cell) if cell.strip() else None
        if lab is None or lab[0] != "field":
            continue
        value = ""
        for nxt in cells[i + 1 :]:
            if not nxt.strip() or label_key(nxt) == label_key(cell):
                continue  # empty or a merged copy of the label cell
            if c.cell_label(nxt) is None:
                value = nxt.strip()
            break
        if value:
            found.append((lab[1], value))
        else:
            dangling.append(i)
    return found, dangling
