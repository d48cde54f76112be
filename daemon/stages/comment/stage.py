"""The pipeline stage: read the comment out of the texts the extract stage left on the work item.

It writes the record's `comments`, `submitter` and `cover_letter`, raises the flags, and leaves the
hashed duplicate keys of the items for the duplicate-text check of the record step.
"""

from __future__ import annotations

import hashlib

from daemon.model import VIRUS, Work
from daemon.rules import CommentRules

from .analysis import analyze
from .normalize import duplicate_key


def comment_stage(work: Work, rules: CommentRules) -> None:
    """Read the comment out of the texts the extract stage left on `work` (daemon.model.Work)."""
    if VIRUS in work.reasons:
        # The content was never read (malware is evidence, not a comment): no comment, so no comment flags.
        return
    result = analyze(work.sources, work.from_address, rules, attachments=len(work.attachments))
    work.result["comments"] = [
        {
            "text": c.text,
            "targets": c.targets,
            "pages": c.pages,
            "chars": c.chars,
            "summary": c.summary,
            "location": c.location,
        }
        for c in result.comments
    ]
    work.result["submitter"] = result.submitter
    work.result["cover_letter"] = result.cover_letter
    for flag in result.flags:
        work.add_flag(flag)
    keys = {duplicate_key(c.text) for c in result.comments}
    work.comment_keys = sorted(hashlib.sha256(k.encode()).hexdigest() for k in keys if k)
