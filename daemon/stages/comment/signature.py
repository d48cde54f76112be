"""Submitter fields from an unlabelled signature block: the name, address, 〒, phone and mail lines at the end.

Only read when no label gave the field (``submitter.guessed`` lists what came from here), and never
published. The block is the part after a "-- " separator, else the last few short lines of the text after
its last sentence (山田太郎 / 〒100-8926 / 東京都千代田区霞が関2-1-2 / 03-1234-5678).
"""

from __future__ import annotations

import re

from .labels import Compiled
from .lines import match_label_line, split_lines
from .normalize import label_key, nfkc, normalize
from .personal import MAIL_RE, POSTAL_RE, is_address, phone_spans

BLOCK_LINES = 6  # a signature block has at most this many lines
LINE_CHARS = 60
_NAME_CH = "[\u4e00-\u9fff々〆ヶ\u3041-\u3096\u30a1-\u30fa\u30fc]"
_NAME_RE = re.compile(f"{_NAME_CH}{{1,6}}(?:[ \u3000]{_NAME_CH}{{1,6}})?")
_KANJI_RE = re.compile(r"[\u4e00-\u9fff々]")
# a department or an office on its own line is no name (技術部, 企画課, 統括官室, 総務省)
_UNIT_SUFFIXES = ("部", "課", "室", "係", "局", "省", "庁", "所", "院", "会", "科", "班", "センター", "グループ",
                  "チーム")


def signature_block(text: str) -> list[str]:
    """The lines of the signature block at the end of `text`, in order (blank lines left out)."""
    lines = [ln.orig for ln in split_lines(text)]
    for i, line in enumerate(lines):
        if line in ("-- ", "--"):
            return [x for x in lines[i + 1 :] if x.strip()][:BLOCK_LINES]
    block: list[str] = []
    for line in reversed(lines):
        s = nfkc(line).strip()
        if not s:
            continue
        if len(s) > LINE_CHARS or s[-1:] in "。.!?！？" or len(block) >= BLOCK_LINES:
            break
        block.append(line)
    return list(reversed(block))


def guess_fields(c: Compiled, text: str) -> list[tuple[str, str]]:
    """(field, value as written) read from the signature block of `text`: name, address, postal_code, phone, email."""
    found: dict[str, str] = {}
    phrases = [k for k in (label_key(p) for p in c.rules.cover_phrases) if k]
    closing = {label_key(w) for w in c.rules.closing_words}
    for line in signature_block(text):
        if match_label_line(c, normalize(line)) is not None:
            continue  # a labelled field is read by the labels
        value = line.strip().strip("　")
        n = nfkc(value)
        if "email" not in found and (m := MAIL_RE.search(value)):
            found["email"] = m.group().strip()
            continue
        if "postal_code" not in found and (m := POSTAL_RE.search(value)) and (n.startswith("〒") or m.start() == 0):
            found["postal_code"] = m.group().lstrip("〒 \t\u3000")
            rest = value[m.end() :].strip()
            if rest and "address" not in found and is_address(rest):
                found["address"] = rest
            continue
        if "phone" not in found and (sp := next(phone_spans(value), None)) and (sp[1] - sp[0]) * 2 >= len(value):
            found["phone"] = value[sp[0] : sp[1]]
            continue
        if "address" not in found and is_address(value):
            found["address"] = value
            continue
        if "name" not in found and _is_name(c, n, phrases, closing):
            found["name"] = value
    return list(found.items())


def _is_name(c: Compiled, n: str, phrases: list[str], closing: set[str]) -> bool:
    """A person's name on a line of its own: 2–13 kanji/kana (one space allowed), with a kanji, that is no
    closing word, cover phrase, organisation, draft or anonymity request."""
    if not _NAME_RE.fullmatch(n) or not _KANJI_RE.search(n):
        return False
    key = label_key(n)
    if len(key) < 2 or key in closing or key.endswith(_UNIT_SUFFIXES) or any(p in key for p in phrases):
        return False
    return not (c.is_organization_name(n) or c.targets(n) or c.mentions_anonymity(n))
