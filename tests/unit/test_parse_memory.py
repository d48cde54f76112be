"""The parse stage's two memory savers (daemon/stages/parse.py) give exactly what the stdlib gives.

`message_from_bytes` feeds the parser in slices instead of through one StringIO; `leaf_bytes` decodes
base64 in one step instead of a bytes object per line. Both are checked against the stdlib on real mail,
on generated base64 with every kind of damage, and for the memory they exist to save.
"""

from __future__ import annotations

import base64
import email
import email.policy
import os
import tracemalloc
from email.message import Message

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.stages.parse import leaf_bytes, message_from_bytes

from conftest import CORPUS
from mails import mail


def stdlib(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def test_real_mail_parses_to_the_same_tree_as_the_stdlib() -> None:
    files = sorted((CORPUS / "eml").glob("*.eml"))
    assert files
    for path in files:
        raw = path.read_bytes()
        ours, theirs = message_from_bytes(raw), stdlib(raw)
        assert ours.as_bytes() == theirs.as_bytes(), path.name
        assert [p.get_content_type() for p in ours.walk()] == [p.get_content_type() for p in theirs.walk()]
        assert [leaf_bytes(p) for p in ours.walk() if not p.is_multipart()] == \
            [p.get_payload(decode=True) for p in theirs.walk() if not p.is_multipart()], path.name


def _leaf(body: bytes) -> Message:
    head = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    return stdlib(head + body)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), width=st.integers(4, 80), damage=st.sampled_from(
    ["none", "no_padding", "junk_chars", "cut", "spaces", "8bit", "extra_after_pad"]))
def test_base64_leaves_decode_exactly_as_the_stdlib(data: bytes, width: int, damage: str) -> None:
    text = base64.b64encode(data)
    if damage == "no_padding":
        text = text.rstrip(b"=")
    elif damage == "junk_chars":
        text = text[: len(text) // 2] + b"!*?" + text[len(text) // 2 :]
    elif damage == "cut":
        text = text[: max(0, len(text) - 3)]
    elif damage == "spaces":
        text = b" ".join(text[i : i + 7] for i in range(0, len(text), 7))
    elif damage == "8bit":
        text = text + "é".encode()
    elif damage == "extra_after_pad":
        text = text + b"=QUJD"
    body = b"\r\n".join(text[i : i + width] for i in range(0, len(text), width)) + b"\r\n"
    leaf = _leaf(body)
    assert leaf_bytes(leaf) == leaf.get_payload(decode=True)


def test_a_20_mb_message_parses_in_a_third_of_the_stdlib_memory() -> None:
    raw = mail(body="大きな添付", attachments=[("意見.xlsx", os.urandom(14_500_000), "application/octet-stream")])
    assert len(raw) > 19_000_000

    def peak(fn) -> int:  # type: ignore[no-untyped-def]
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            fn()
            return tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()

    def ours() -> None:
        msg = message_from_bytes(raw)
        assert len(leaf_bytes(msg.get_payload()[1])) == 14_500_000

    def theirs() -> None:
        msg = stdlib(raw)
        assert len(msg.get_payload()[1].get_payload(decode=True)) == 14_500_000

    mine, stdlib_peak = peak(ours), peak(theirs)
    print(f"parse+decode peak above the raw bytes: ours {mine / 1e6:.0f} MB, stdlib {stdlib_peak / 1e6:.0f} MB")
    assert mine * 3 < stdlib_peak
    assert mine < 4 * len(raw)  # the budget's PARSE_FACTOR covers it with room
