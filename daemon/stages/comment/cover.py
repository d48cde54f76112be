"""R9a: is the body only a cover letter? One that sends, greets or signs, and nothing more.

When a mail's comment is in its attachments, the body is a cover letter if every sentence of it holds one of
the rules' cover phrases (添付します, 送付いたします, よろしくお願いします, 御中 …), is a field line
(氏名：…) or is a short line of a signature (a name, an address, a phone number: no sentence ending, no draft
or page named), and the whole is at most `cover_letter.max_chars` long. Anything else the person wrote
makes the body a comment item too, so that no text of theirs is left out.
"""

from __future__ import annotations

import re

from .labels import Compiled
from .lines import classify_lines, split_lines
from .normalize import count_chars, label_key, nfkc
from .references import page_refs

SIGNATURE_LINE_CHARS = 40  # a line of a signature block is short
_SENTENCE_END = re.compile(r"(?<=[。．！？!?])")


def cover_keys(c: Compiled) -> list[str]:
    return [k for k in (label_key(p) for p in c.rules.cover_phrases) if k]


def is_cover_letter(c: Compiled, text: str) -> bool:
    """True when `text` (a mail body) only sends, greets or signs."""
    lines = split_lines(text)
    classify_lines(c, lines, True)
    kept = [ln for ln in lines if not ln.in_signature]
    if count_chars("".join(ln.orig for ln in kept)) > c.rules.cover_max_chars:
        return False
    phrases = cover_keys(c)
    for ln in kept:
        if ln.kind in ("blank", "field", "field_value", "anon") or ln.orig in ("-- ", "--"):
            continue
        for sentence in _SENTENCE_END.split(ln.orig):
            if not sentence.strip():
                continue
            key = label_key(sentence)
            if any(p in key for p in phrases):
                continue
            if _signature_like(c, sentence):
                continue
            return False
    return True


def _signature_like(c: Compiled, sentence: str) -> bool:
    """A name, an organisation, an address or a number on a line of its own: short, no sentence end, and
    naming no draft or page (「本編P.3について」 is a comment, however short)."""
    s = nfkc(sentence).strip()
    if len(s) > SIGNATURE_LINE_CHARS or s[-1:] in "。.!?！？":
        return False
    return not c.targets(s) and not page_refs(s)
