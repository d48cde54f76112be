"""Every decoder by name, each returning the text and the number of U+FFFD it had to emit.

Python's codecs only replace or raise; a registered error handler counts the replacements (per
thread, since decodes run side by side) so a lossy decode can be flagged.
"""

from __future__ import annotations

import codecs
import threading

from daemon.decode.charsets import CP50221, EUCJP, EUCJP_MS
from daemon.decode.decoded import REPLACEMENT
from daemon.decode.eucjpms import decode_eucjp_ms
from daemon.decode.iso2022jp import decode_cp50221

_counter = threading.local()
_COUNT_HANDLER = "pubcomment.decode.count"


def _count_and_replace(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    _counter.n = getattr(_counter, "n", 0) + 1
    return REPLACEMENT, exc.end


codecs.register_error(_COUNT_HANDLER, _count_and_replace)


def py_decode(data: bytes, codec: str) -> tuple[str, int]:
    """A Python codec, strict first; on failure again with each undecodable byte counted as U+FFFD."""
    try:
        return data.decode(codec), 0
    except UnicodeDecodeError:
        pass
    _counter.n = 0
    text = data.decode(codec, _COUNT_HANDLER)
    return text, _counter.n


def run_decoder(name: str, data: bytes) -> tuple[str, int]:
    """The decoder ``name`` (ours or a Python codec), lenient: (text, number of replacements)."""
    if name == CP50221:
        return decode_cp50221(data)
    if name == EUCJP_MS:
        return decode_eucjp_ms(data)
    if name == EUCJP:
        return py_decode(data, "euc_jp")
    return py_decode(data, name)
