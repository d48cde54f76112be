"""The result document 「提出された意見及び考え方」 as plain data: what `result_docs` writes to Word and Excel.

Built from the database by daemon/staff/results.py (outline placement, groups, answers, redaction already
applied); written by daemon/staff/result_docs.py. Nothing here touches a database or a file, so the writers
can be tested on hand-made documents and the builder on its data alone.

The shape follows what the ministries publish (総務省, e.g. 電気通信事業報告規則の一部を改正する省令案 別紙2):
a list of submitters 「計N者（M件）（意見提出順、敬称略）」 with organisations by name and individuals as
「個人」, then one table per section of the draft, one row per comment or per group of comments to the same
effect (「（同旨N件）」), numbered 意見1-1, 1-2 … within section 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

REVISED_YES = "有"
REVISED_NO = "無"


@dataclass(frozen=True)
class ResultRow:
    number: str  # 意見1-1
    opinion: str  # 提出された意見: the first member's text, personal data already masked
    answer: str  # 意見に対する考え方 (empty while nobody has written it)
    revised: str | None  # 修正の有無: 有 | 無 | None (not decided)
    same: int  # how many comment items this row stands for: 1, or N for 「（同旨N件）」
    submitters: tuple[str, ...]  # who sent them, named as the submitter list names them (「個人」 for individuals)


@dataclass(frozen=True)
class ResultSection:
    number: int  # 1, 2, … in outline order; the 「その他・全般」 section is last
    title: str  # as the outline names it, e.g. 「本編 第2章 AIシステムへの脅威」
    rows: tuple[ResultRow, ...]

    @property
    def heading(self) -> str:
        return f"{self.number}．{self.title}"


@dataclass(frozen=True)
class ResultDocument:
    title: str  # 「〇〇（案）」に対する意見募集で提出された意見及び総務省の考え方
    consultation: str  # the draft's title, from rules/ [consultation] title
    period: str  # 意見募集期間 as text, e.g. 令和7年12月26日（金）～令和8年1月29日（木）
    submitters: tuple[str, ...]  # in order of first submission: 名称 (and 代表者), 法人・団体（匿名希望）, 個人
    items: int  # 件: comment items counted (superseded records and duplicates left out)
    sections: tuple[ResultSection, ...] = field(default_factory=tuple)

    @property
    def counts_line(self) -> str:
        """「計N者（M件）（意見提出順、敬称略）」"""
        return f"計{len(self.submitters)}者（{self.items}件）（意見提出順、敬称略）"

    @property
    def show_revised(self) -> bool:
        """The 修正の有無 column appears when any answer has one."""
        return any(r.revised for s in self.sections for r in s.rows)


def same_label(row: ResultRow) -> str:
    """「（同旨N件）」 for a group of N ≥ 2, else empty."""
    return f"（同旨{row.same}件）" if row.same >= 2 else ""
