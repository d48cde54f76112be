"""`analyze()`: all the texts of one mail → its comment items, submitter and flags.

Each source is first read on its own (`source`); here the sources are weighed against each other: which
attachment is the 意見書, whether the body is the comment or only a cover letter, which 要旨 applies to
which item, and in which order the sources supply the submitter's fields.
"""

from __future__ import annotations

from collections.abc import Sequence

from daemon.rules import CommentRules

from .flags import comment_flags
from .labels import compiled
from .model import CommentItem, CommentResult, TextSource
from .source import SourceInfo, analyze_source
from .submitter import read_submitter


def analyze(sources: Sequence[TextSource], from_address: str | None, rules: CommentRules) -> CommentResult:
    """Read the comment of one mail from its decoded body and attachments and the From address."""
    c = compiled(rules)
    infos = [analyze_source(c, s) for s in sources]
    bodies = [i for i in infos if i.src.is_body]
    atts = [i for i in infos if not i.src.is_body]

    # which attachments are the 意見書: field labels or a 該当箇所/意見 table; failing that,
    # numbered sections or 該当箇所/意見 labels
    docs = [a for a in atts if a.has_fields or a.has_comment_table] or [a for a in atts if a.has_markers]
    others = [a for a in atts if a not in docs]
    comment_sources: list[SourceInfo] = []
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
    order: list[SourceInfo] = []
    for s in [*comment_sources, *docs, *bodies, *others]:
        if s not in order:
            order.append(s)
    submitter = read_submitter(
        [f for s in order for f in s.fields], [a for s in order for a in s.anon], from_address, c
    )
    return CommentResult(
        comments=items,
        submitter=submitter,
        flags=comment_flags(items, submitter, rules),
        cover_letter=cover,
    )
