"""The wire: aiosmtpd's SMTP and LMTP protocol classes with the few overrides the library cannot serve, and
the start and stop of the listeners on the daemon's own event loop (`loop.create_server` /
`create_unix_server`, no Controller thread).

aiosmtpd (1.4.6) speaks the protocol and calls the handler's hooks (`handler.py`). What it cannot do for us,
each override below says why: no SIZE keyword, so an MTA hands us oversize mail to refuse and count
(`data_size_limit`), a limit that follows a rules reload, a declared SIZE= over
the limit refused and counted at MAIL FROM (`smtp_MAIL`), an oversize or broken DATA answered with our replies,
once per recipient, and counted (`smtp_DATA`, `_read_data`), and LMTP's greeting named in "send LHLO first".
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import grp
import logging
import os
import re
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, syntax

from daemon.logs import get_logger
from daemon.pipeline import Intake
from daemon.rules import Rules
from daemon.sources.lmtp.config import LmtpConfig
from daemon.sources.lmtp.handler import (
    REPLY_LINE_TOO_LONG,
    REPLY_TOO_BIG_DATA,
    REPLY_TOO_BIG_DECLARED,
    DeliveryHandler,
    RefusalHook,
    ReplyHook,
    ThreadRunner,
    replies,
)
from daemon.sources.lmtp.refusals import on_door_refusal
from daemon.stages.size import size_limit, too_large

log = get_logger("lmtp")

# aiosmtpd logs envelope addresses at INFO on "mail.log": never let them reach the journal (R12).
logging.getLogger("mail.log").setLevel(logging.WARNING)

_SIZE_PARAM = re.compile(r"(?:^|\s)SIZE=(\d+)(?:\s|$)", re.IGNORECASE)


class ListenerError(RuntimeError):
    """A listener that cannot start; str() is one line naming the key or path."""


# -- the protocol classes --------------------------------------------------------------------------------
class _DataState(enum.Enum):
    NOMINAL = 0
    TOO_LONG = 1
    TOO_MUCH = 2


class _IntakeProtocol(SMTP):
    """aiosmtpd's SMTP, with the size rule decided by `daemon.stages.size` and our own DATA loop."""

    listener: str = "smtp"
    source: str = "smtp"
    trace_protocol: str = "ESMTP"
    per_recipient_replies: bool = False

    def __init__(self, handler: DeliveryHandler, listener: str, **kw: Any) -> None:
        self.delivery = handler
        super().__init__(handler, enable_SMTPUTF8=True, decode_data=False,
                         hostname=handler.config.hostname or None, ident="pubcomment-intake",
                         timeout=handler.config.timeout, **kw)
        self.listener = listener
        self.data_started = 0.0

    # No SIZE keyword in the EHLO/LHLO reply, on purpose (README, "Direct delivery over LMTP"): an MTA that
    # reads SIZE (Postfix's LMTP and SMTP clients do) refuses an oversize message itself and bounces it, and
    # the intake never hears of it, so staff would see no count and no alert. Without SIZE the MTA sends the
    # message; we read it to the end without keeping it, answer 552 5.3.4 (the MTA bounces with our text)
    # and count and alert the refusal. aiosmtpd reads `data_size_limit` for that keyword and for its own
    # SIZE= check; both are ours: the limit comes from the rules in force (`smtp_MAIL`, `_read_data`), which
    # a reload replaces while an MTA keeps its connection open (Postfix's connection cache).
    @property  # type: ignore[override]
    def data_size_limit(self) -> int | None:
        return None

    @data_size_limit.setter
    def data_size_limit(self, _fixed: int | None) -> None:
        """aiosmtpd's __init__ assigns its own number here; the rules decide, so it is not kept."""

    # aiosmtpd checks a declared SIZE= too, but answers its own line ("552 Error: message size exceeds fixed
    # maximum message size", no enhanced status code) before any handler hook runs, so that refusal could be
    # neither counted nor alerted. We decide first, by the size rule, and leave the rest of MAIL to the library.
    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if arg and not self.envelope.mail_from:
            match = _SIZE_PARAM.search(arg.rpartition(">")[2])
            if match and too_large(int(match.group(1)), self.delivery.intake.rules):
                await self.push(REPLY_TOO_BIG_DECLARED)
                await self.delivery.refuse(self.listener, self.source, int(match.group(1)), "mail_from")
                return
        await super().smtp_MAIL(arg)

    async def _read_data(self, rules: Rules) -> tuple[bytes | None, int, _DataState]:
        """Read up to the lone dot like aiosmtpd 1.4.6 does, but keep counting past the limit, and
        return None for content the peer never finished (connection lost): it is never recorded.

        aiosmtpd has no public way to read DATA, so this reads its stream (`self._reader`) as its own
        `smtp_DATA` does. A lost connection cancels this coroutine, and aiosmtpd's command loop then closes
        the stream itself."""
        data: list[bytes] = []
        fragments: list[bytes] = []
        num_bytes = 0
        state = _DataState.NOMINAL
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.IncompleteReadError:
                if self.transport is not None:
                    self.transport.close()
                return None, num_bytes, state
            except asyncio.LimitOverrunError as exc:
                if state == _DataState.NOMINAL:
                    state = _DataState.TOO_LONG
                data.clear()
                line = await self._reader.read(exc.consumed)
                if not line:
                    return None, num_bytes, state
            if not fragments and line == b".\r\n":
                return (b"".join(data) if state == _DataState.NOMINAL else b""), num_bytes, state
            num_bytes += len(line)
            if state == _DataState.NOMINAL and too_large(num_bytes, rules):
                state = _DataState.TOO_MUCH
                data.clear()
            fragments.append(line)
            if line.endswith(b"\r\n"):
                if state == _DataState.NOMINAL:
                    full = b"".join(fragments)
                    if len(full) > self.line_length_limit:
                        state = _DataState.TOO_LONG
                        data.clear()
                    else:
                        data.append(full[1:] if full.startswith(b".") else full)  # RFC 5321 4.5.2
                fragments.clear()
        return None, num_bytes, state

    # DATA stays ours because, past the limit or past the line length, aiosmtpd answers its own single line
    # ("552 Error: Too much mail data", "500 Line too long (see RFC5321 4.5.3.1.6)") and calls no hook and
    # tells no byte count: our 552 must carry its enhanced code, go once per recipient over LMTP, and be
    # counted and alerted with its size. A message within the limit goes to the handler's `handle_DATA`,
    # the hook aiosmtpd itself would call, which returns the reply (one line per recipient over LMTP).
    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None and self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        recipients = len(self.envelope.rcpt_tos)
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self.data_started = time.perf_counter()
        # One transaction is judged by one set of rules: the ones in force when its DATA begins.
        content, num_bytes, state = await self._read_data(self.delivery.intake.rules)
        if content is None:  # connection lost before the end of DATA: nothing recorded, nothing answered
            log.info("delivery_aborted", listener=self.listener, source=self.source, size=num_bytes)
            self._set_post_data_state()
            return
        if state == _DataState.TOO_MUCH:
            self._set_post_data_state()
            await self.push(replies(REPLY_TOO_BIG_DATA, self, recipients))
            await self.delivery.refuse(self.listener, self.source, num_bytes, "data")
            return
        if state == _DataState.TOO_LONG:
            self._set_post_data_state()
            log.warning("delivery_refused", listener=self.listener, source=self.source, reply=500,
                        detail="line_too_long")
            await self.push(replies(REPLY_LINE_TOO_LONG, self, recipients))
            return

        self.envelope.content = self.envelope.original_content = content
        self.delivery.begin()  # from here until the reply is written, `stop_lmtp` waits for it
        try:
            reply = await self.delivery.handle_DATA(self, self.session, self.envelope)
            self._set_post_data_state()
            await self.push(reply)
        finally:
            self.delivery.end()


class IntakeSMTP(_IntakeProtocol):
    source = "smtp"
    trace_protocol = "ESMTP"
    per_recipient_replies = False


class IntakeLMTP(_IntakeProtocol, LMTP):
    source = "lmtp"
    trace_protocol = "LMTP"
    per_recipient_replies = True

    # aiosmtpd's LMTP keeps SMTP's "503 Error: send HELO first", a command LMTP refuses: name LHLO instead.
    async def check_helo_needed(self, helo: str = "LHLO") -> bool:
        return await super().check_helo_needed(helo)


# -- starting the listeners ------------------------------------------------------------------------------
def _clear_stale_socket(path: Path) -> None:
    """A socket file left by a dead daemon is removed; one that answers belongs to a live one."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenerError(f"lmtp.socket: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        path.unlink(missing_ok=True)  # nobody listens: stale
        return
    finally:
        probe.close()
    raise ListenerError(f"lmtp.socket: {path} is in use by another process")


def _bind_unix(path: Path, mode: int, group: str) -> socket.socket:
    """A listening socket that appears at `path` only once its mode and group are right: bound under a
    temporary name, then renamed into place. Created in place, the MTA could connect in the moment
    between bind and chmod and be refused (EACCES), which it reports as a deferral."""
    gid = -1
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ListenerError(f"lmtp.socket_group: group {group!r} does not exist") from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(tmp))
        os.chmod(tmp, mode)
        if gid != -1:
            os.chown(tmp, -1, gid)
        sock.listen(100)
        os.rename(tmp, path)
    except BaseException:
        sock.close()
        tmp.unlink(missing_ok=True)
        raise
    sock.setblocking(False)
    _unix_paths[sock.fileno()] = str(path)
    return sock


_unix_paths: dict[int, str] = {}  # listening fd -> the path it was renamed to (getsockname keeps the old name)


async def start_lmtp(
    intake: Intake,
    config: LmtpConfig,
    on_refusal: RefusalHook = on_door_refusal,
    before_reply: ReplyHook | None = None,
    thread: ThreadRunner = asyncio.to_thread,
) -> list[asyncio.AbstractServer]:
    """Start the enabled listeners on the running loop; return the servers (stop them with `stop_lmtp`).
    Raises ListenerError (one line) when a listener cannot start; none is left running then.
    `thread(fn, *args)` runs the synchronous pipeline off the loop (default asyncio.to_thread)."""
    loop = asyncio.get_running_loop()
    handler = DeliveryHandler(intake, config, asyncio.Semaphore(config.max_transactions), on_refusal, before_reply,
                              thread)
    servers: list[asyncio.AbstractServer] = []
    _handlers.append((servers, handler))

    def lmtp_factory(listener: str) -> Callable[[], IntakeLMTP]:
        return lambda: IntakeLMTP(handler, listener, loop=loop)

    try:
        if config.enabled and config.socket:
            path = Path(config.socket)
            if not path.parent.is_dir():
                raise ListenerError(f"lmtp.socket: folder {path.parent} does not exist")
            _clear_stale_socket(path)
            sock = _bind_unix(path, config.socket_mode, config.socket_group)
            server = await loop.create_unix_server(lmtp_factory("lmtp-unix"), sock=sock)
            servers.append(server)
            log.info("listening", listener="lmtp-unix", path_kind="unix", size=size_limit(intake.rules))
        if config.enabled and config.port:
            servers.append(await loop.create_server(lmtp_factory("lmtp-tcp"), host=config.host, port=config.port))
            log.info("listening", listener="lmtp-tcp", port=config.port, size=size_limit(intake.rules))
        if config.smtp_enabled:
            servers.append(await loop.create_server(lambda: IntakeSMTP(handler, "smtp", loop=loop),
                                                    host=config.smtp_host, port=config.smtp_port))
            log.info("listening", listener="smtp", port=config.smtp_port, size=size_limit(intake.rules))
    except OSError as exc:
        await stop_lmtp(servers)
        raise ListenerError(f"lmtp: cannot listen ({exc.__class__.__name__}: {exc.strerror or exc})") from None
    except ListenerError:
        await stop_lmtp(servers)
        raise
    return servers


_handlers: list[tuple[list[asyncio.AbstractServer], DeliveryHandler]] = []


async def stop_lmtp(servers: list[asyncio.AbstractServer], grace: float = 60.0) -> None:
    """Close the listeners (no new connections), let the transactions whose DATA has ended get their
    reply (up to `grace` seconds), and remove the Unix socket files. Idle connections are left to
    the loop's shutdown: an MTA retries whatever was not answered."""
    paths = [_unix_paths.pop(sock.fileno(), sock.getsockname()) for server in servers
             for sock in (server.sockets or ()) if sock.family == socket.AF_UNIX]
    for server in servers:
        server.close()
    for server in servers:
        with contextlib.suppress(Exception):
            await server.wait_closed()
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)
    for entry in [e for e in _handlers if e[0] is servers or set(map(id, e[0])) & set(map(id, servers))]:
        _handlers.remove(entry)
        handler = entry[1]
        if handler.in_flight:
            log.info("draining", in_flight=handler.in_flight)
            try:
                await asyncio.wait_for(handler.idle.wait(), grace)
            except TimeoutError:
                log.warning("drain_timeout", in_flight=handler.in_flight)
