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

The package, in the order a text goes through it:
- ``model``       the data: ``TextSource`` in, ``CommentItem`` and ``CommentResult`` out;
- ``normalize``   normalized views for matching (positions map back to the text as written), ``duplicate_key``;
- ``labels``      the rules' labels and markers compiled once per rules object (``compiled()``);
- ``lines``       each line classified: field, label, heading, anonymity, text;
- ``sections``    classified lines split into blocks, one comment item per block;
- ``references``  an item's targets and page references;
- ``tables``      該当箇所/意見 tables, field cells, tab-separated tables, vertical forms;
- ``source``      one source (body or attachment) read on its own;
- ``submitter``   the submitter's fields, kind and anonymity;
- ``flags``       the record flags (``FLAGS``);
- ``analysis``    ``analyze()``: all the sources of one mail weighed together;
- ``stage``       ``comment_stage()``: the pipeline stage over a ``Work``.
"""

from __future__ import annotations

from daemon.rules import FIELD_NAMES, CommentRules

from .analysis import analyze
from .flags import FLAGS
from .model import CommentItem, CommentResult, TextSource
from .normalize import duplicate_key
from .stage import comment_stage

__all__ = [
    "FIELD_NAMES",
    "FLAGS",
    "CommentItem",
    "CommentResult",
    "CommentRules",
    "TextSource",
    "analyze",
    "comment_stage",
    "duplicate_key",
]
