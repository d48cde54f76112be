"""Parse the message with stdlib `email` and sort its MIME leaves into body parts and attachments.

Body parts (R4a) are the text/plain and text/html alternatives, images the HTML references by
`cid:`, and the S/MIME signature: scanned with the whole message, not listed as attachments.
Every other leaf is an attachment, a forwarded mail (message/rfc822) included: we do not descend
into it, so it is classified as one opaque attachment of a kind that is not allowed.

mail-parser is not used for bodies: it returns 7-bit ISO-2022-JP bodies undecoded (LESSONS).
"""

from __future__ import annotations

import binascii
import email
import email.policy
import re
from collections.abc import Iterator
from email.feedparser import BytesFeedParser
from email.message import Message

from daemon.decode import decode_filename, part_text
from daemon.model import MALFORMED, MALFORMED_STRUCTURE, BodyPart, Part, Work
from daemon.stages.headers import header_text, read_identity
from daemon.stages.structure import Breach, StructureLimits, measure

DEFAULT_STRUCTURE = StructureLimits()

# A header block starts with a field name and a colon (an mbox "From " line is tolerated).
_FIRST_FIELD = re.compile(rb"^(From [^\r\n]*\r?\n)?[!-9;-~]+[ \t]*:")
_CID = re.compile(r"cid:([^\"'\s>)]+)", re.IGNORECASE)
_FEED = 64 * 1024
SIGNATURE_TYPES = {"application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"}


def looks_like_mail(raw: bytes) -> bool:
    head = raw[:65536]
    end = min(i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n"), len(head)) if i != -1)
    return bool(_FIRST_FIELD.match(head)) and b"\0" not in head[:end]


def leaves(msg: Message) -> Iterator[Message]:
    """MIME leaves in order, without descending into message/rfc822 (it is one attachment). Iterative: the
    depth is bounded by the structure check, but a walk should not need the call stack either."""
    stack = [msg]
    while stack:
        part = stack.pop()
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            subs = [sub for sub in (part.get_payload() or []) if isinstance(sub, Message)]
            stack.extend(reversed(subs))
        else:
            yield part


def _walk(msg: Message) -> Iterator[Message]:
    """Every part, iteratively (Message.walk nests a generator per level)."""
    stack = [msg]
    while stack:
        part = stack.pop()
        yield part
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend(reversed([sub for sub in payload if isinstance(sub, Message)]))


def _is_attachment_disposition(part: Message) -> bool:
    disp = header_text(part.get("Content-Disposition")).split(";", 1)[0].strip().lower()
    return disp == "attachment"


def _content_id(part: Message) -> str | None:
    cid = header_text(part.get("Content-ID"))
    return cid.strip("<>").strip() or None


def _refuse(work: Work, reason: str, detail: str | None = None) -> None:
    work.add_reason(reason)
    if detail:
        work.defects = [detail]
    work.done = True


def parse_message(work: Work, limits: StructureLimits = DEFAULT_STRUCTURE) -> None:
    raw = work.arrival.raw
    if not looks_like_mail(raw):
        _refuse(work, MALFORMED)
        return
    # The shape first, on the bytes (issue 16): a mail too deep, too wide or with monstrous headers is a
    # verdict in milliseconds, before the stdlib parser recurses or holds 10,000 parts.
    shape = measure(raw, limits)
    if isinstance(shape, Breach):
        _refuse(work, MALFORMED_STRUCTURE, f"limit:{shape.which}")
        return
    try:
        msg = message_from_bytes(raw)
    except RecursionError:  # deeper than the structure check saw: the same verdict, never a crash
        _refuse(work, MALFORMED_STRUCTURE, "limit:mime_depth")
        return
    if not msg.keys():
        _refuse(work, MALFORMED)
        return
    # The parsed tree is not kept on `work`: for a 20 MB message it holds ~35 MB after the parse, and
    # the stages after this one need only the parts copied out below.
    read_identity(msg, work)
    work.defects = sorted({d.__class__.__name__ for p in _walk(msg) for d in getattr(p, "defects", [])})

    all_leaves = list(leaves(msg))
    # The cid: references of the HTML bodies decide which images are inline (R4a).
    referenced: set[str] = set()
    for leaf in all_leaves:
        if leaf.get_content_type() == "text/html" and not _is_attachment_disposition(leaf):
            referenced.update(m.lower() for m in _CID.findall(part_text(leaf).text))

    position = 0
    for leaf in all_leaves:
        ctype = leaf.get_content_type()
        named = decode_filename(leaf)
        filename = named.text if named else None
        attached = _is_attachment_disposition(leaf) or filename is not None
        if ctype in ("text/plain", "text/html") and not attached:
            work.body_parts.append(BodyPart("text" if ctype == "text/plain" else "html", leaf))
            continue
        cid = _content_id(leaf)
        if leaf.get_content_maintype() == "image" and cid and cid.lower() in referenced:
            work.body_parts.append(BodyPart("inline", leaf))
            continue
        if ctype in SIGNATURE_TYPES:
            work.body_parts.append(BodyPart("signature", leaf))
            continue
        if ctype == "message/rfc822" or leaf.is_multipart():
            data = leaf.as_bytes() if leaf.is_multipart() else _rfc822_bytes(leaf)
        else:
            data = leaf_bytes(leaf)
        position += 1
        work.attachments.append(Part(position=position, data=data, filename=filename, declared_mime=ctype,
                                     forwarded=ctype == "message/rfc822"))


def message_from_bytes(raw: bytes) -> Message:
    """`email.message_from_bytes`, fed in slices: the stdlib wraps the whole message, decoded, in a StringIO,
    which stores it at four bytes a character (a 20 MB message peaked at 173 MB; fed like this, 54 MB)."""
    parser = BytesFeedParser(policy=email.policy.compat32)
    view = memoryview(raw)
    for start in range(0, len(raw), _FEED):
        parser.feed(bytes(view[start : start + _FEED]))
    return parser.close()


def leaf_bytes(leaf: Message) -> bytes:
    """The decoded content of a leaf. Base64 (the usual attachment) is decoded in one step: the stdlib splits
    it into a bytes object per line first (89 MB at the peak for 20 MB). Anything binascii refuses (bad
    padding, 8-bit bytes) goes the stdlib's way; tests/test_parse_memory.py checks the results agree."""
    if header_text(leaf.get("Content-Transfer-Encoding")).lower() == "base64":
        try:
            payload = leaf.get_payload()
        except (ValueError, LookupError):  # the stdlib looks the charset up here: "utf\x00" raises (fuzz)
            payload = None
        if isinstance(payload, str):
            try:
                return binascii.a2b_base64(payload.encode("ascii"))
            except (UnicodeEncodeError, binascii.Error):
                pass
    data = leaf.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _rfc822_bytes(leaf: Message) -> bytes:
    payload = leaf.get_payload() if leaf.is_multipart() else None
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0].as_bytes()
    data = leaf.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""
