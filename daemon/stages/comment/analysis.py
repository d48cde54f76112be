"""`analyze()`: all the texts of one mail → its comment items, submitter and flags.

Each source is first read on its own (`source`); here the sources are weighed against each other (R9a: the
comment is what the person wrote, wherever it is):

1. an attachment that is a labelled 意見書 (field labels, a 該当箇所/意見 table, numbered 意見 sections)
   holds the comment; the body is a cover letter;
2. else the text of the other allowed attachments (free-form Word, Excel, text, Ichitaro) is the comment,
   and the body is an item too unless it only sends, greets or signs (`cover`);
3. else the body is the comment, unless the mail has attachments we could not read (a PDF, a failed
   extraction) and the body only sends them: then there is no comment item (flag ``empty``).

It also decides which 要旨 applies to which item and in which order the sources supply the submitter's
fields; fields no label gave may be read from a signature block (`signature`), listed in ``guessed``.
"""

from __future__ import annotations

from collections.abc import Sequence

from daemon.rules import CommentRules

from .cover import is_cover_letter
from .flags import comment_flags
from .labels import compiled
from .model import CommentItem, CommentResult, TextSource
from .signature import guess_fields
from .source import SourceInfo, analyze_source
from .submitter import read_submitter


def analyze(
    sources: Sequence[TextSource], from_address: str | None, rules: CommentRules, attachments: int | None = None
) -> CommentResult:
    """Read the comment of one mail from its decoded body and attachments and the From address.

    `attachments` is the number of attachments the mail carries, read or not (None: those in `sources`)."""
    c = compiled(rules)
    infos = [analyze_source(c, s) for s in sources]
    bodies = [i for i in infos if i.src.is_body]
    atts = [i for i in infos if not i.src.is_body]
    has_attachments = bool(atts) or bool(attachments)

    # which attachments are the 意見書: field labels or a 該当箇所/意見 table; failing that,
    # numbered sections or 該当箇所/意見 labels
    docs = [a for a in atts if a.has_fields or a.has_comment_table] or [a for a in atts if a.has_markers]
    others = [a for a in atts if a not in docs]
    body_is_cover = has_attachments and all(is_cover_letter(c, b.src.text) for b in bodies if b.has_text)
    written_bodies = [] if body_is_cover else [b for b in bodies if b.items]
    comment_sources: list[SourceInfo]
    if any(d.items for d in docs):
        comment_sources = [d for d in docs if d.items]  # the 意見書 (today's rule: the body is a cover letter)
    elif any(o.items for o in others):
        comment_sources = [*written_bodies, *[o for o in others if o.items]]
    else:
        comment_sources = written_bodies
    from_attachment = any(not s.src.is_body for s in comment_sources)
    used_bodies = [b for b in bodies if b in comment_sources]
    cover = next((b.src.source for b in bodies if b.has_text and b not in used_bodies), None)

    items: list[CommentItem] = [it for s in comment_sources for it in s.items]
    whole = next((s.whole_summary for s in comment_sources if s.whole_summary), None)
    if whole is None and from_attachment:
        # a 要旨 in the cover letter (its own text, when it was read as a comment) applies to all
        whole = next((x for b in bodies for x in [b.whole_summary, *(i.summary for i in b.items)] if x), None)
    if whole is not None:
        for it in items:
            if it.summary is None:
                it.summary = whole

    # submitter fields: the 意見書 first, then the body, then any other attachment; then a signature block
    order: list[SourceInfo] = []
    for s in [*comment_sources, *docs, *bodies, *others]:
        if s not in order:
            order.append(s)
    labelled = [f for s in order for f in s.fields]
    given = {k for k, v in labelled if v}
    guessed: list[tuple[str, str]] = []
    for s in [*bodies, *[o for o in order if not o.src.is_body]]:
        guessed.extend((k, v) for k, v in guess_fields(c, s.src.text or "") if k not in given)
    submitter = read_submitter(labelled, [a for s in order for a in s.anon], from_address, c, guessed)
    return CommentResult(
        comments=items,
        submitter=submitter,
        flags=comment_flags(items, submitter, rules),
        cover_letter=cover,
    )
