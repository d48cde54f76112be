"""The decoded text of a MIME part, in the charset its Content-Type declares."""

from __future__ import annotations

import email.message

from daemon.decode.bodies import decode_bytes
from daemon.decode.decoded import Decoded
from daemon.decode.headers import raw_header
from daemon.decode.params import parse_params, rfc2231


def part_text(part: email.message.Message) -> Decoded:
    """The decoded text of a (text/*) MIME part: transfer-decoded payload bytes through decode_bytes."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        payload = b""
    return decode_bytes(payload, _content_charset(part))


def _content_charset(part: email.message.Message) -> str | None:
    raw = raw_header(part, "content-type")
    if raw is None:
        return None
    params = parse_params(raw)
    for name, value in params:
        if name == "charset":
            return value.decode("ascii", "replace")
    extended = rfc2231(params, "charset")
    return extended.text if extended is not None else None
