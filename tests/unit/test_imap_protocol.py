"""daemon/sources/imap/client.py ImapProtocol.data_received: aioimaplib's own formats the repr of every chunk for a
DEBUG line whether DEBUG is on or not (~5 ms of the event loop per MB downloaded); ours never turns the data into
text. The responses still parse: an untagged EXISTS split across two chunks is seen once it is whole."""

from __future__ import annotations

import asyncio

from daemon.sources.imap.client import ImapProtocol


class Unprintable(bytes):
    def __str__(self) -> str:
        raise AssertionError("the received data was formatted as text")

    __repr__ = __str__


def test_received_data_is_never_formatted_and_still_parsed() -> None:
    loop = asyncio.new_event_loop()
    try:
        proto = ImapProtocol(loop, lambda _exc: None)
        proto.data_received(Unprintable(b"* 3 EXI"))
        assert not proto.new_mail and proto.incomplete_line == b"* 3 EXI"  # half a line waits for the rest
        proto.data_received(Unprintable(b"STS\r\n"))
        assert proto.new_mail and proto.incomplete_line == b""
        assert proto.bytes_received == len(b"* 3 EXISTS\r\n")
    finally:
        loop.close()
