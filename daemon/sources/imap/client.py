"""aioimaplib 2.0.3, made safe for a daemon that runs for months.

aioimaplib parses a response recursively, one call per line, and dies with a RecursionError (then hangs)
once one response has about 1,000 lines (iroco-co/aioimaplib#118, open): a `UID FETCH 1:1000 (FLAGS)`, or
the 1,000 EXPUNGE lines of another client's move. `ImapProtocol` parses the same way in a loop instead.
It also counts the bytes read (tests check that nothing big was downloaded), remembers the commands sent
(never LOGIN, which carries the password) and notices `* n EXISTS`, so the watcher looks again before it
idles. `ImapClient` is aioimaplib's client with this protocol plugged in.

`ImapProtocol.authenticate` is the SASL exchange for OAuth 2.0 (daemon/sources/imap/auth.py builds the strings):
aioimaplib's own `xoauth2` logs the base64 of the token at DEBUG (its scrub looks for the raw token) and hangs
on a refusal, because the server's error challenge waits for an answer that it never sends.

The rest of the defence is in the session and the config: UID sets stay small (imap.batch_size ≤ 500),
every command has a timeout, `conn_lost_cb` is set, and QRESYNC is enabled where offered so that other
daemons' moves arrive as one VANISHED line.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import aioimaplib
from aioimaplib.aioimaplib import AUTH, CRLF, IncompleteRead, change_state, literal_data_re


class ImapProtocol(aioimaplib.IMAP4ClientProtocol):
    """aioimaplib's protocol with an iterative response parser (no RecursionError on long
    responses), a count of the bytes read, the commands sent (no LOGIN), and new-mail detection."""

    EXISTS = re.compile(rb"^\* \d+ EXISTS")

    def __init__(self, loop: asyncio.AbstractEventLoop, conn_lost_cb: Callable[[Exception | None], None]) -> None:
        super().__init__(loop, conn_lost_cb)
        self.bytes_received = 0
        self.sent: deque[str] = deque(maxlen=2000)
        self.new_mail = False
        self._sasl: list[str] = []  # what to answer to the server's next continuation during AUTHENTICATE
        self._sasl_abort = ""
        self.sasl_challenges: list[bytes] = []

    def data_received(self, d: bytes) -> None:
        # aioimaplib's own data_received, without its `log.debug('Received : %s' % d)`: that formats the repr of
        # every chunk read whether DEBUG is on or not, ~5 ms of the event loop's CPU per MB of mail downloaded.
        self.bytes_received += len(d)
        try:
            self._handle_responses(self.incomplete_line + d, self._handle_line, self.current_command)
            self.incomplete_line = b""
            self.current_command = None
        except IncompleteRead as incomplete_read:
            self.current_command = incomplete_read.cmd
            self.incomplete_line = incomplete_read.data

    def send(self, line: str, scrub: str | None = None) -> None:
        if " AUTHENTICATE " in line:
            # The initial response holds the token: neither remembered nor logged, even at DEBUG.
            self.sent.append(" ".join(line.split(" ")[:3]) + " ***")
            assert self.transport is not None
            self.transport.write(line.encode("ascii") + CRLF)
            return
        if " LOGIN " not in line:
            self.sent.append(line)
        super().send(line, scrub)

    def _continuation(self, line: bytes) -> None:
        command = self.pending_sync_command
        if command is None or command.name != "AUTHENTICATE":
            super()._continuation(line)
            return
        self.sasl_challenges.append(bytes(line[1:]).strip())
        answer = self._sasl.pop(0) if self._sasl else self._sasl_abort
        assert self.transport is not None
        self.transport.write(answer.encode("ascii") + CRLF)

    @change_state
    async def authenticate(self, mechanism: str, initial: str, abort: str, sasl_ir: bool) -> aioimaplib.Response:
        """AUTHENTICATE <mechanism> with its initial response (on the command line where the server has SASL-IR,
        else after its first `+`); a later challenge (the server's error) is answered with `abort`, after which
        the server sends the tagged NO."""
        self.sasl_challenges = []
        self._sasl = [] if sasl_ir else [initial]
        self._sasl_abort = abort
        args = [mechanism, initial] if sasl_ir else [mechanism]
        try:
            response = await self.execute(aioimaplib.Command("AUTHENTICATE", self.new_tag(), *args, loop=self.loop))
        finally:
            self._sasl = []
        if response.result == "OK":
            self.state = AUTH
        return response

    def _handle_line(self, line: bytes, current_cmd: Any) -> Any:
        if self.EXISTS.match(line):
            self.new_mail = True
        return super()._handle_line(line, current_cmd)

    def _handle_responses(self, data: bytes, line_handler: Callable[[bytes, Any], Any],
                          current_cmd: Any = None) -> None:
        # The same steps as aioimaplib's, in a loop instead of one recursive call per line.
        while True:
            if not data:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                data = current_cmd.append_literal_data(data)
                if current_cmd.wait_literal_data():
                    raise IncompleteRead(current_cmd)
            line, separator, tail = data.partition(CRLF)
            if not separator:
                raise IncompleteRead(current_cmd, data)
            cmd = line_handler(line, current_cmd)
            begin_literal = literal_data_re.match(line)
            if begin_literal:
                if cmd is None:
                    cmd = aioimaplib.Command("NIL", "unused")
                cmd.begin_literal_data(int(begin_literal.group("size")))
                data, current_cmd = tail, cmd
            elif cmd is not None and cmd.wait_data():
                data, current_cmd = tail, cmd
            else:
                data, current_cmd = tail, None


class ImapClient(aioimaplib.IMAP4):
    """aioimaplib's client on `ImapProtocol` (its own `create_client` offers no way to choose the protocol)."""

    def create_client(self, host: str, port: int, loop: asyncio.AbstractEventLoop | None,
                      conn_lost_cb: Callable[[Exception | None], None] | None = None,
                      ssl_context: ssl.SSLContext | None = None) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = ImapProtocol(local_loop, conn_lost_cb or (lambda _exc: None))
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context))
