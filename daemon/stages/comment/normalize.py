"""Normalised views of text for matching (NFKC, dash and tilde variants unified) and the duplicate key.

Stored text is kept exactly as written; the normalised forms here are only used for matching and as keys.
`Norm` keeps, for each normalised character, the span of the original it came from, so that a match found
in the normalised text can be cut out of the original as written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

_MATCH_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\ufe58\ufe63\uff0d"
_MATCH_TILDES = "\u301c\u223c\u223e\uff5e"
_MATCH_TABLE = str.maketrans({**dict.fromkeys(_MATCH_DASHES, "-"), **dict.fromkeys(_MATCH_TILDES, "~")})
# The duplicate key also folds the long-vowel mark (ｰ → ー) and box-drawing lines into "-".
_KEY_TABLE = str.maketrans(
    {
        **dict.fromkeys(_MATCH_DASHES + "\u30fc\u2500\u2501", "-"),
        **dict.fromkeys(_MATCH_TILDES, "~"),
    }
)
_ZERO_WIDTH = frozenset("\u200b\u200c\u200d\u2060\ufeff")


def duplicate_key(text: str) -> str:
    """Key for duplicate/form-letter grouping: NFKC, dash and tilde variants unified, no whitespace."""
    t = unicodedata.normalize("NFKC", text).translate(_KEY_TABLE)
    return "".join(c for c in t if not c.isspace() and c not in _ZERO_WIDTH)


def nfkc(s: str) -> str:
    return unicodedata.normalize("NFKC", s).translate(_MATCH_TABLE)


@dataclass
class Norm:
    """A normalized view of `orig` whose positions map back to the original text."""

    orig: str
    norm: str
    starts: Sequence[int]
    ends: Sequence[int]

    def slice(self, a: int, b: int) -> str:
        if b <= a:
            return ""
        return self.orig[self.starts[a] : self.ends[b - 1]]

    def orig_pos(self, a: int) -> int:
        return self.starts[a] if a < len(self.starts) else len(self.orig)


@lru_cache(maxsize=4096)
def _nfkc_chunk(s: str) -> str:
    return nfkc(s)


def normalize(s: str) -> Norm:
    whole = nfkc(s)
    if whole == s:  # already normalized (most Japanese text): positions map one to one
        return Norm(s, s, range(len(s)), range(1, len(s) + 1))
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i, n = 0, len(s)
    while i < n:
        j = i + 1
        while j < n and (unicodedata.combining(s[j]) or s[j] in "\uff9e\uff9f"):
            j += 1
        for c in _nfkc_chunk(s[i:j]):
            out.append(c)
            starts.append(i)
            ends.append(j)
        i = j
    return Norm(s, "".join(out), starts, ends)


def label_key(s: str) -> str:
    """Comparison key for labels and markers: NFKC, no whitespace, casefolded."""
    return re.sub(r"\s+", "", nfkc(s)).casefold()


def alternation(labels: Sequence[str]) -> str:
    keys = sorted({label_key(lb) for lb in labels if label_key(lb)}, key=lambda k: (-len(k), k))
    return "|".join(r"\s*".join(re.escape(c) for c in k) for k in keys)


def count_chars(text: str) -> int:
    return sum(1 for c in unicodedata.normalize("NFC", text) if not c.isspace())


_URL_RE = re.compile(r"(?:https?|ftp)://[^\s<>\"'、。）)]+|www\.[^\s<>\"'、。）)]+", re.IGNORECASE)
_EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")  # from a run's start only: linear


def mask_links(s: str) -> str:
    if "://" not in s and "www." not in s and "@" not in s:
        return s
    s = _URL_RE.sub(lambda m: " " * len(m.group()), s)
    return _EMAIL_RE.sub(lambda m: " " * len(m.group()), s)
