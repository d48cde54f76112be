"""Direct delivery: the MTA hands each message to the intake over LMTP (Unix socket or TCP) or SMTP.

A 250 means "recorded": the raw bytes are fsync'd in the raw store and the record is committed
(`Intake.process` returns) before the reply is written. Anything that fails before that point is a
451 4.3.0, so the MTA keeps the message and tries again. A scanner that is down is not such a
failure: the pipeline records the message as `held` (durable, retried from the raw store) and we
answer 250.

Size (R3) is decided at the door: `SIZE` is advertised as the rules' limit and aiosmtpd's
`data_size_limit` is set to it; a declared `SIZE=` over it gets 552 at MAIL FROM, an undeclared
oversize body gets 552 after DATA and is never stored. Every 552 is logged, counted in the
`door_refusals` table (time, size, source, stage; no personal data) and passed to `on_door_refusal`.

LMTP (RFC 2033) wants one reply per accepted recipient after DATA; aiosmtpd 1.4's LMTP sends one
line. `smtp_DATA` is therefore our own here (the same data loop as aiosmtpd's), and every outcome
(250, 451, 552, 500) is answered once per recipient. All recipients of one transaction share one
record: it is one arrival of one message.

The listeners are served on the daemon's own event loop (`loop.create_server` /
`create_unix_server`, no Controller thread); the pipeline runs in a worker thread
(`asyncio.to_thread`), at most `max_transactions` at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import enum
import grp
import logging
import os
import re
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session, syntax
from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession

from daemon.alerts.outbox import enqueue_door_refusal
from daemon.config import ConfigError
from daemon.jst import JST
from daemon.logs import get_logger
from daemon.model import TOO_LARGE, Arrival
from daemon.pipeline import Intake, StorageError
from daemon.store.db import DoorRefusal

log = get_logger("lmtp")

# aiosmtpd logs envelope addresses at INFO on "mail.log": never let them reach the journal (R12).
logging.getLogger("mail.log").setLevel(logging.WARNING)

REPLY_TRY_AGAIN = "451 4.3.0 Not recorded: temporary failure, try again later"
REPLY_TOO_BIG_DECLARED = "552 5.3.4 Message size exceeds fixed maximum message size"
REPLY_TOO_BIG_DATA = "552 5.3.4 Too much mail data: message size exceeds fixed maximum message size"
REPLY_LINE_TOO_LONG = "500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)"
REPLY_TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"

_SIZE_PARAM = re.compile(r"(?:^|\s)SIZE=(\d+)(?:\s|$)", re.IGNORECASE)
_HELO_SAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")


class ListenerError(RuntimeError):
    """A listener that cannot start; str() is one line naming the key or path."""


# -- configuration --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LmtpConfig:
    """The `[lmtp]` table of the service configuration.

    enabled        LMTP listeners on (default false)
    socket         Unix socket path for LMTP (default /run/intake/lmtp.sock; "" for none)
    socket_mode    its mode, e.g. 0o660 or "0660" (default 0660)
    socket_group   group of the socket file, e.g. "postfix" (default: unchanged)
    host, port     LMTP over TCP (default host 127.0.0.1, port 0 = off)
    smtp_enabled   an SMTP listener too (default false), on smtp_host / smtp_port (127.0.0.1:2525)
    hostname       the name in the greeting and in the Received: field (default: the FQDN)
    max_transactions  messages run through the pipeline at once; more wait (default 4)
    max_recipients    per transaction; more get 452 4.5.3 and the MTA sends them again (default 100)
    timeout        idle seconds before a connection is closed (default 300)
    """

    enabled: bool = False
    socket: str = "/run/intake/lmtp.sock"
    socket_mode: int = 0o660
    socket_group: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    smtp_enabled: bool = False
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    hostname: str = ""
    max_transactions: int = 4
    max_recipients: int = 100
    timeout: float = 300.0

    @property
    def any_enabled(self) -> bool:
        return (self.enabled and bool(self.socket or self.port)) or self.smtp_enabled

    @classmethod
    def from_config(cls, raw: dict[str, Any]) -> LmtpConfig:
        """Read the `[lmtp]` table of the whole parsed TOML file (`Config.raw`)."""
        table = raw.get("lmtp", {})
        if not isinstance(table, dict):
            raise ConfigError("[lmtp]: must be a table")
        known = set(cls.__dataclass_fields__)
        for key in table:
            if key not in known:
                raise ConfigError(f"lmtp.{key}: unknown key")

        def get(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
            if key not in table:
                return default
            value = table[key]
            bool_ok = kind is bool or (isinstance(kind, tuple) and bool in kind)
            if not isinstance(value, kind) or (isinstance(value, bool) and not bool_ok):
                raise ConfigError(f"lmtp.{key}: wrong type {type(value).__name__}")
            return value

        def port(key: str, default: int) -> int:
            value = get(key, int, default)
            if not 0 <= value <= 65535:
                raise ConfigError(f"lmtp.{key}: must be 0..65535")
            return int(value)

        def positive(key: str, default: int) -> int:
            value = get(key, int, default)
            if value < 1:
                raise ConfigError(f"lmtp.{key}: must be at least 1")
            return int(value)

        mode_value = get("socket_mode", (int, str), 0o660)
        if isinstance(mode_value, str):
            try:
                mode_value = int(mode_value, 8)
            except ValueError:
                raise ConfigError("lmtp.socket_mode: must be octal, e.g. \"0660\"") from None
        if not 0 <= mode_value <= 0o777:
            raise ConfigError("lmtp.socket_mode: must be between 0000 and 0777")
        timeout = float(get("timeout", (int, float), 300.0))
        if timeout <= 0:
            raise ConfigError("lmtp.timeout: must be positive")
        config = cls(
            enabled=get("enabled", bool, False),
            socket=get("socket", str, cls.socket),
            socket_mode=mode_value,
            socket_group=get("socket_group", str, None) or None,
            host=get("host", str, cls.host),
            port=port("port", 0),
            smtp_enabled=get("smtp_enabled", bool, False),
            smtp_host=get("smtp_host", str, cls.smtp_host),
            smtp_port=port("smtp_port", cls.smtp_port),
            hostname=get("hostname", str, ""),
            max_transactions=positive("max_transactions", 4),
            max_recipients=positive("max_recipients", 100),
            timeout=timeout,
        )
        if config.smtp_enabled and not config.smtp_port:
            raise ConfigError("lmtp.smtp_port: must be set when smtp_enabled")
        return config


# -- door refusals (552) --------------------------------------------------------------------------------
def on_door_refusal(size: int, when: dt.datetime) -> None:
    """Hook for every 552 at the door (size in bytes, time of refusal). The alerting issue raises a
    `rejected` alert from here; for now it is a structured log event. No record id, no personal data."""
    log.warning("door_refusal", size=size, at=when.astimezone(dt.UTC).isoformat(), reasons=[TOO_LARGE])


def record_door_refusal(intake: Intake, when: dt.datetime, size: int, source: str, stage: str) -> None:
    """Append one row to `door_refusals` (for `intake stats`)."""
    with intake.sessions.begin() as session:
        session.add(DoorRefusal(at=when, size=size, source=source, reason=TOO_LARGE, stage=stage))
        # The `rejected` alert commits with the refusal it reports (size and time only, R12).
        enqueue_door_refusal(session, size, when, source=source, limit=intake.rules.max_message_bytes)


def door_refusal_count(session: DbSession, since: dt.datetime | None = None, until: dt.datetime | None = None) -> int:
    """How many messages were refused at the door (552) in [since, until); for `intake stats`."""
    query = select(func.count()).select_from(DoorRefusal)
    if since is not None:
        query = query.where(DoorRefusal.at >= since)
    if until is not None:
        query = query.where(DoorRefusal.at < until)
    return int(session.scalar(query) or 0)


# -- the handler: what to do with a complete message ----------------------------------------------------
RefusalHook = Callable[[int, dt.datetime], None]
ReplyHook = Callable[["Delivery"], Awaitable[None]]
ThreadRunner = Callable[..., Awaitable[Any]]  # e.g. asyncio.to_thread, or the service's own executor


@dataclass
class Delivery:
    """One transaction's outcome, as it is about to be answered."""

    listener: str
    received_at: dt.datetime
    size: int
    recipients: int
    record_id: int | None
    reply: str


class DeliveryHandler:
    """Shared by every connection of the listeners started together (aiosmtpd's handler object)."""

    def __init__(
        self,
        intake: Intake,
        config: LmtpConfig,
        slots: asyncio.Semaphore,
        on_refusal: RefusalHook = on_door_refusal,
        before_reply: ReplyHook | None = None,
        thread: ThreadRunner = asyncio.to_thread,
    ) -> None:
        self.thread = thread
        self.intake = intake
        self.config = config
        self.slots = slots
        self.on_refusal = on_refusal
        self.before_reply = before_reply  # a seam for tests: runs after the outcome is known, before the reply
        self._tasks: set[asyncio.Task[Any]] = set()
        self.in_flight = 0  # transactions between the end of DATA and their reply
        self.idle = asyncio.Event()
        self.idle.set()

    def begin(self) -> None:
        self.in_flight += 1
        self.idle.clear()

    def end(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0:
            self.idle.set()

    @property
    def size_limit(self) -> int:
        return self.intake.rules.max_message_bytes

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            return REPLY_TOO_MANY_RCPTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_exception(self, error: Exception) -> str:
        # An unexpected error in a command: never a 5xx (the MTA would bounce), never its text (R12).
        log.error("listener_error", error=error.__class__.__name__)
        return REPLY_TRY_AGAIN

    async def refuse(self, listener: str, source: str, size: int, stage: str) -> None:
        """A 552 was answered: log, hook, count. Failures here never change the reply."""
        when = dt.datetime.now(dt.UTC)
        try:
            self.on_refusal(size, when)
        except Exception as exc:
            log.error("door_refusal_hook_failed", error=exc.__class__.__name__)
        try:
            await self.thread(record_door_refusal, self.intake, when, size, source, stage)
        except Exception as exc:
            log.error("door_refusal_not_counted", error=exc.__class__.__name__, source=source, listener=listener)

    async def deliver(self, listener: str, source: str, raw: bytes, received_at: dt.datetime,
                      trace_bytes: int = 0) -> tuple[int | None, str]:
        """Run the pipeline in a worker thread; return (record id, reply line). The pipeline keeps
        running if the client goes away meanwhile (its record then stands; an MTA retry is a duplicate)."""
        task = asyncio.get_running_loop().create_task(self._deliver(source, raw, received_at, trace_bytes))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    async def _deliver(self, source: str, raw: bytes, received_at: dt.datetime,
                       trace_bytes: int = 0) -> tuple[int | None, str]:
        arrival = Arrival(raw=raw, source=source, received_at=received_at, received_source=source,
                          trace_bytes=trace_bytes)
        async with self.slots:
            try:
                record_id = (await self.thread(self.intake.process, arrival)).id
            except StorageError as exc:
                log.error("delivery_deferred", error=str(exc), source=source, size=len(raw), reply=451)
                return None, REPLY_TRY_AGAIN
            except Exception as exc:  # any failure before the record is durable: the MTA must retry
                log.error("delivery_deferred", error=exc.__class__.__name__, source=source, size=len(raw), reply=451)
                return None, REPLY_TRY_AGAIN
        return record_id, f"250 2.0.0 Ok: recorded as {record_id}"


# -- the protocol classes --------------------------------------------------------------------------------
class _DataState(enum.Enum):
    NOMINAL = 0
    TOO_LONG = 1
    TOO_MUCH = 2


def received_field(listener: str, protocol: str, hostname: str, helo: str | None, peer: Any,
                   when: dt.datetime) -> bytes:
    """The one trace field we add, on top (the content identity drops leading Received fields)."""
    helo_text = _HELO_SAFE.sub("", helo or "")[:255] or "unknown"
    if isinstance(peer, tuple) and len(peer) >= 2:
        peer_text = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
    else:
        peer_text = "local socket"
    host = _HELO_SAFE.sub("", hostname)[:255] or "localhost"
    return (
        f"Received: from {helo_text} ({peer_text})\r\n"
        f"\tby {host} (pubcomment-intake, listener {listener}) with {protocol};\r\n"
        f"\t{format_datetime(when.astimezone(JST))}\r\n"
    ).encode("ascii")


class _IntakeProtocol(SMTP):
    """SMTP with our own SIZE check at MAIL FROM and our own DATA (one reply per recipient in LMTP)."""

    listener: str = "smtp"
    source: str = "smtp"
    trace_protocol: str = "ESMTP"
    per_recipient_replies: bool = False

    def __init__(self, handler: DeliveryHandler, listener: str, **kw: Any) -> None:
        super().__init__(handler, data_size_limit=handler.size_limit, enable_SMTPUTF8=True, decode_data=False,
                         hostname=handler.config.hostname or None, ident="pubcomment-intake",
                         timeout=handler.config.timeout, **kw)
        self.listener = listener
        self.delivery = handler

    async def _reply_all(self, line: str, count: int) -> None:
        n = count if self.per_recipient_replies else 1
        await self.push("\r\n".join([line] * max(n, 1)))

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        assert self.envelope is not None
        if arg and not self.envelope.mail_from:
            match = _SIZE_PARAM.search(arg.rpartition(">")[2])
            limit = self.data_size_limit
            if match and limit and int(match.group(1)) > limit:
                await self.push(REPLY_TOO_BIG_DECLARED)
                await self.delivery.refuse(self.listener, self.source, int(match.group(1)), "mail_from")
                return
        await super().smtp_MAIL(arg)

    async def _read_data(self) -> tuple[bytes | None, int, _DataState]:
        """Read up to the lone dot like aiosmtpd 1.4.6 does, but keep counting past the limit, and
        return None for content the peer never finished (connection lost): it is never recorded."""
        data: list[bytes] = []
        fragments: list[bytes] = []
        num_bytes = 0
        limit = self.data_size_limit
        state = _DataState.NOMINAL
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                self._writer.close()
                raise
            except asyncio.IncompleteReadError:
                self._writer.close()
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
            if state == _DataState.NOMINAL and limit and num_bytes > limit:
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
        started = time.perf_counter()
        content, num_bytes, state = await self._read_data()
        received_at = dt.datetime.now(dt.UTC)  # the moment the MTA finished handing it over (R2)
        if content is None:  # connection lost before the end of DATA: nothing recorded, nothing answered
            log.info("delivery_aborted", listener=self.listener, source=self.source, size=num_bytes)
            self._set_post_data_state()
            return
        if state == _DataState.TOO_MUCH:
            self._set_post_data_state()
            await self._reply_all(REPLY_TOO_BIG_DATA, recipients)
            await self.delivery.refuse(self.listener, self.source, num_bytes, "data")
            return
        if state == _DataState.TOO_LONG:
            self._set_post_data_state()
            log.warning("delivery_refused", listener=self.listener, source=self.source, reply=500,
                        detail="line_too_long")
            await self._reply_all(REPLY_LINE_TOO_LONG, recipients)
            return

        trace = received_field(self.listener, self.trace_protocol, self.hostname, self.session.host_name,
                               self.session.peer, received_at)
        raw = trace + content
        self.delivery.begin()
        try:
            record_id, reply = await self.delivery.deliver(self.listener, self.source, raw, received_at,
                                                           trace_bytes=len(trace))
            self._set_post_data_state()
            outcome = Delivery(self.listener, received_at, len(raw), recipients, record_id, reply)
            if self.delivery.before_reply is not None:
                await self.delivery.before_reply(outcome)
            await self._reply_all(reply, recipients)
        finally:
            self.delivery.end()
        log.info("delivery", listener=self.listener, source=self.source, record=record_id, size=len(raw),
                 recipients=recipients, reply=int(reply[:3]),
                 duration_ms=round((time.perf_counter() - started) * 1000, 2))


class IntakeSMTP(_IntakeProtocol):
    source = "smtp"
    trace_protocol = "ESMTP"
    per_recipient_replies = False


class IntakeLMTP(_IntakeProtocol, LMTP):
    source = "lmtp"
    trace_protocol = "LMTP"
    per_recipient_replies = True

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
            server = await loop.create_unix_server(lmtp_factory("lmtp-unix"), path=str(path))
            servers.append(server)
            os.chmod(path, config.socket_mode)
            if config.socket_group:
                try:
                    os.chown(path, -1, grp.getgrnam(config.socket_group).gr_gid)
                except KeyError:
                    raise ListenerError(f"lmtp.socket_group: group {config.socket_group!r} does not exist") from None
            log.info("listening", listener="lmtp-unix", path_kind="unix", size=handler.size_limit)
        if config.enabled and config.port:
            servers.append(await loop.create_server(lmtp_factory("lmtp-tcp"), host=config.host, port=config.port))
            log.info("listening", listener="lmtp-tcp", port=config.port, size=handler.size_limit)
        if config.smtp_enabled:
            servers.append(await loop.create_server(lambda: IntakeSMTP(handler, "smtp", loop=loop),
                                                    host=config.smtp_host, port=config.smtp_port))
            log.info("listening", listener="smtp", port=config.smtp_port, size=handler.size_limit)
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
    paths = [sock.getsockname() for server in servers for sock in (server.sockets or ())
             if sock.family == socket.AF_UNIX]
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
