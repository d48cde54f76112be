"""The comment stage's data: the texts it reads (`TextSource`) and what it finds (`CommentItem`, `CommentResult`).

Plain dataclasses with no behaviour, so that the extract stage can hand texts over and the record can be
built without importing any of the matching machinery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


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
