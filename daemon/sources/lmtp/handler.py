"""The delivery handler: what the intake answers to a transaction, and the recording behind a 250.

This is aiosmtpd's handler object (its `handle_RCPT`, `handle_DATA` and `handle_exception` hooks), shared by
every connection of the listeners started together. It holds the policy; `server.py` holds the wire:

  250 2.0.0   recorded: the raw bytes are fsync'd and the record committed (`Intake.process` returned)
  451 4.3.0   anything that failed before that point, so the MTA keeps the message and tries again
  552 5.3.4   over the size limit (R3), at MAIL FROM (declared SIZE=) or after DATA; logged, counted, alerted
  452 4.5.3   more recipients than `max_recipients`: the MTA sends them again in another transaction

Over LMTP every reply after DATA is given once per accepted recipient (RFC 2033 4.2); all recipients of one
transaction share one record: it is one arrival of one message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, Envelope, Session

from daemon.jst import JST
from daemon.logs import get_logger
from daemon.model import Arrival
from daemon.pipeline import Intake, StorageError
from daemon.sources.lmtp.config import LmtpConfig
from daemon.sources.lmtp.refusals import on_door_refusal
from daemon.stages.size import size_limit

log = get_logger("lmtp")

REPLY_TRY_AGAIN = "451 4.3.0 Not recorded: temporary failure, try again later"
REPLY_TOO_BIG_DECLARED = "552 5.3.4 Message size exceeds fixed maximum message size"
REPLY_TOO_BIG_DATA = "552 5.3.4 Too much mail data: message size exceeds fixed maximum message size"
REPLY_LINE_TOO_LONG = "500 5.5.2 Line too long (see RFC 5321 4.5.3.1.6)"
REPLY_TOO_MANY_RCPTS = "452 4.5.3 Too many recipients"

_HELO_SAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")

RefusalHook = Callable[[int, dt.datetime], None]
ReplyHook = Callable[["Delivery"], Awaitable[None]]
ThreadRunner = Callable[..., Awaitable[Any]]  # e.g. asyncio.to_thread, or the service's own executor


class Door(Protocol):
    """What the handler reads of the connection that calls it (the protocol classes of `server.py`)."""

    listener: str  # lmtp-unix, lmtp-tcp or smtp
    source: str  # the record's source: lmtp or smtp
    trace_protocol: str  # LMTP or ESMTP, for the Received: field
    per_recipient_replies: bool  # LMTP: one reply per recipient after DATA
    hostname: str
    data_started: float  # time.perf_counter() at the 354, for the delivery log's duration


def replies(line: str, door: Door, recipients: int) -> str:
    """The reply after DATA: `line` once per recipient over LMTP, once over SMTP. aiosmtpd writes a reply
    as it is and adds the final CRLF, so several lines joined by CRLF go out as several replies."""
    n = recipients if door.per_recipient_replies else 1
    return "\r\n".join([line] * max(n, 1))


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
        """The limit of the rules in force now: a reload (SIGHUP) replaces `intake.rules`, never cache this."""
        return size_limit(self.intake.rules)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            return REPLY_TOO_MANY_RCPTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Door, session: Session, envelope: Envelope) -> str:
        """aiosmtpd's DATA hook, for a complete message within the limit (`envelope.original_content`): put our
        Received: field on top, record it, and return the reply, once per recipient over LMTP."""
        received_at = dt.datetime.now(dt.UTC)  # the moment the MTA finished handing it over (R2)
        recipients = len(envelope.rcpt_tos)
        trace = received_field(server.listener, server.trace_protocol, server.hostname, session.host_name,
                               session.peer, received_at)
        raw = trace + (envelope.original_content or b"")
        record_id, reply = await self.deliver(server.listener, server.source, raw, received_at,
                                              trace_bytes=len(trace))
        if self.before_reply is not None:
            await self.before_reply(Delivery(server.listener, received_at, len(raw), recipients, record_id, reply))
        log.info("delivery", listener=server.listener, source=server.source, record=record_id, size=len(raw),
                 recipients=recipients, reply=int(reply[:3]),
                 duration_ms=round((time.perf_counter() - server.data_started) * 1000, 2))
        return replies(reply, server, recipients)

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
            await self.thread(self.intake.refuse_at_door, when, size, source, stage)
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
