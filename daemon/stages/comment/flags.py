"""The record flags of a comment (R6–R11), from its items and its submitter.

A flag marks what staff should look at; it never rejects the mail. `FLAGS` is their order in the record.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from daemon.rules import CommentRules

from .model import CommentItem
from .normalize import mask_links

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

# letters: any Unicode letter (\w without digits and "_"); Japanese: kana, kanji, 々〆ヶ
_LETTER_RE = re.compile(r"[^\W\d_]")
_JAPANESE_RE = re.compile(
    "[\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff\u3005\u3006]"
)


def japanese_share(text: str) -> float | None:
    """Share of kana/kanji among the letters (URLs and mail addresses ignored); None if no letters."""
    t = mask_links(unicodedata.normalize("NFKC", text))
    letters = len(_LETTER_RE.findall(t))
    if not letters:
        return None
    return len(_JAPANESE_RE.findall(t)) / letters


def comment_flags(items: Sequence[CommentItem], submitter: dict[str, Any], rules: CommentRules) -> list[str]:
    """The flags raised by the items and the submitter, in the order of `FLAGS`."""
    flags: set[str] = set()
    for it in items:
        share = japanese_share(it.text)
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
    return [f for f in FLAGS if f in flags]
