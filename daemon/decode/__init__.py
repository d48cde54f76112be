"""Charset decoding for mail bodies, headers and attachment file names.

The standard library ``email`` package parses the MIME structure; this package turns the raw bytes it
hands back into text.  Every result records which decoder won and how many characters could not be
decoded (each one became U+FFFD), so callers can keep the raw bytes and flag lossy decodes.

Japanese mail is the main concern (see design/LESSONS.md, "Japanese charsets"):

* ``ISO-2022-JP`` is decoded by a hand-written CP50220/CP50221-compatible decoder (``"cp50221"``):
  each JIS X 0208 pair is mapped to Shift_JIS and decoded as cp932, so NEC row 13 (①㈱) and the
  NEC-selected IBM extensions (髙﨑, JIS rows 89-92) come out as Windows shows them, and the wave dash
  comes out as U+FF5E like cp932.
* Every Shift_JIS label means cp932.
* EUC-JP is tried with Python's ``euc_jp`` first and then with an eucJP-ms decoder (``"eucjp-ms"``,
  EUC -> JIS -> Shift_JIS -> cp932, plus the eucJP-ms IBM-extension and user-defined areas).
  ``euc_jis_2004`` is never used as a fallback: it turns eucJP-ms bytes into wrong kanji without
  reporting any error.
* Wrong or missing labels are handled by a fallback chain that only accepts strict decodes and
  compares candidates by how plausible the text is (share of kana, common kanji, ASCII; penalties
  for control characters, private-use and rare characters).  charset-normalizer is only a last
  resort for unlabelled data that no Japanese or Unicode decoder can read.

Functions that take a ``Message`` read the raw header values through ``Message.raw_items()``, so
they work with messages parsed by ``email.message_from_bytes`` under ``policy.compat32`` (preferred)
and ``policy.default`` alike.

The modules, from the bottom up (each imports only those above it):

* ``decoded``: the ``Decoded`` result and the replacement character;
* ``charsets``: MIME charset labels -> canonical decoder names;
* ``jis``: single JIS X 0208/0212/0213 characters (via cp932 where Windows does);
* ``iso2022jp`` and ``eucjpms``: the hand-written ISO-2022-JP (CP50221) and eucJP-ms decoders;
* ``decoders``: every decoder by name, with counted replacements;
* ``ranking``: how plausible a decoding reads, and the best of several (charset-normalizer last);
* ``bodies``: ``decode_bytes``, the label first and then the fallback chain;
* ``headers``: RFC 2047 encoded words in header values;
* ``params``: RFC 2045/2231 MIME parameters and attachment file names;
* ``parts``: the text of a MIME part.
"""

from __future__ import annotations

from daemon.decode.bodies import decode_bytes
from daemon.decode.charsets import normalize_charset
from daemon.decode.decoded import Decoded
from daemon.decode.headers import decode_header
from daemon.decode.params import decode_filename
from daemon.decode.parts import part_text

__all__ = [
    "Decoded",
    "decode_bytes",
    "decode_filename",
    "decode_header",
    "normalize_charset",
    "part_text",
]
