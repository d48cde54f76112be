"""The sender task: outbox rows → channels, with retry and backoff, and one digest per category window.

Each round (`deliver_due`):
1. **route**: every new alert gets one delivery row per channel its category is routed to (and the log);
2. **retry**: a batch that failed before is sent again, unchanged (same id, same alerts), once its backoff
   has passed; while it waits, its (channel, category) forms no new batch, so order is kept;
3. **window**: per (channel, category): after a quiet spell (nothing sent for `window_seconds`) the oldest
   pending alert goes out at once, alone; alerts that arrive while the window is open wait for its end
   and go out together as one digest, with counts by reason and signature. 300 virus mails in 10
   minutes with a 5-minute window are 3 messages per channel: the first, and two digests.

Delivery is at least once: a batch is marked sent only after the channel accepted it. If the daemon
dies in between, the next round (after the claim's lease ran out) sends it again with the same id
(mail: the same Message-ID and X-Intake-Alert-Id; webhook: the same `id` / Idempotency-Key header).
Claims (`claimed_by`, `claimed_until`) keep two daemons from sending the same batch at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from daemon.alerts import events
from daemon.alerts.channels import Channel, ChannelError, build_channels
from daemon.alerts.events import Item, Rendered
from daemon.alerts.outbox import enqueue_once
from daemon.alerts.settings import AlertSettings
from daemon.logs import get_logger
from daemon.store.db import Alert, AlertDelivery, Attachment

if TYPE_CHECKING:
    from daemon.alerts.watch import AlertMonitor

log = get_logger("alerts")

PENDING = "pending"
SENT = "sent"


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Outgoing:
    channel: str
    batch: str
    mode: str
    delivery_ids: list[int]
    attempts: int
    rendered: Rendered


@dataclass(frozen=True)
class Result:
    channel: str
    batch: str
    ok: bool
    count: int
    error: str | None = None


class _Lost(Exception):
    """Another daemon claimed part of this batch first."""


class Sender:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: AlertSettings,
        channels: dict[str, Channel] | None = None,
        monitor: AlertMonitor | None = None,
        owner: str | None = None,
        clock: Callable[[], dt.datetime] = now_utc,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.channels = channels if channels is not None else build_channels(settings)
        self.monitor = monitor
        self.owner = (owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")[:64]
        self.clock = clock
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- waking up early (a watcher raised an alert) -------------------------------------------------------
    def wake(self) -> None:
        """Safe from any thread."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    def backoff(self, attempts: int) -> float:
        return float(min(self.settings.backoff_base * 2 ** max(attempts - 1, 0), self.settings.backoff_max))

    # -- one round -------------------------------------------------------------------------------------------
    async def deliver_due(self, now: dt.datetime | None = None) -> list[Result]:
        now = now or self.clock()
        results = await self._flush_volatile(now)
        plan = await asyncio.to_thread(self.plan, now)
        for out in plan:
            channel = self.channels.get(out.channel)
            error: str | None = None
            try:
                if channel is None:
                    raise ChannelError(f"{out.channel}:not_configured")
                await channel.send(out.rendered)
            except ChannelError as exc:
                error = str(exc)
            except Exception as exc:  # a bug in a channel must not stop the others
                error = f"{out.channel}:{exc.__class__.__name__}"
            await asyncio.to_thread(self.finish, out, error, now)
            results.append(Result(out.channel, out.batch, error is None, len(out.delivery_ids), error))
        return results

    def route(self, now: dt.datetime) -> int:
        """Create the delivery rows of new alerts (one per routed channel, and the log)."""
        with self.sessions() as session:
            fresh = session.execute(
                select(Alert.id, Alert.category).where(Alert.routed.is_(False)).order_by(Alert.id).limit(1000)
            ).all()
        if not fresh:
            return 0
        try:
            with self.sessions.begin() as session:
                done = session.execute(
                    update(Alert).where(Alert.id.in_([a for a, _ in fresh]), Alert.routed.is_(False))
                    .values(routed=True)
                ).rowcount
                if done != len(fresh):  # another daemon routed some of them: roll back, start over next round
                    raise _Lost
                session.add_all(
                    AlertDelivery(alert_id=alert_id, channel=channel, category=category, state=PENDING, attempts=0)
                    for alert_id, category in fresh
                    for channel in self.settings.channels_for(category)
                )
        except _Lost:
            return 0
        return len(fresh)

    def plan(self, now: dt.datetime) -> list[Outgoing]:
        self.route(now)
        plan: list[Outgoing] = []
        with self.sessions() as session:
            pending = session.execute(
                select(AlertDelivery, Alert.created_at)
                .join(Alert, Alert.id == AlertDelivery.alert_id)
                .where(AlertDelivery.state == PENDING)
                .order_by(AlertDelivery.id)
            ).all()
            batched: dict[tuple[str, str], list[AlertDelivery]] = defaultdict(list)
            fresh: dict[tuple[str, str], list[tuple[AlertDelivery, dt.datetime]]] = defaultdict(list)
            blocked: set[tuple[str, str]] = set()
            for delivery, created in pending:
                if delivery.batch is not None:
                    blocked.add((delivery.channel, delivery.category))
                    batched[(delivery.channel, delivery.batch)].append(delivery)
                else:
                    fresh[(delivery.channel, delivery.category)].append((delivery, created))
            # 1. batches that failed before, unchanged, once their backoff has passed
            for (channel, batch), rows in batched.items():
                if any(r.next_attempt_at is not None and r.next_attempt_at > now for r in rows):
                    continue
                if any(r.claimed_until is not None and r.claimed_until > now for r in rows):
                    continue
                plan.append(self._outgoing(session, channel, batch, rows[0].mode or "single", rows, now))
            # 2. new alerts, by window
            for (channel, category), rows_at in fresh.items():
                if (channel, category) in blocked:
                    continue
                window = self.settings.category(category).window_seconds
                rows_at = [(r, c) for r, c in rows_at if r.claimed_until is None or r.claimed_until <= now]
                if not rows_at:
                    continue
                if window <= 0:
                    for row, _ in rows_at:
                        plan.append(self._outgoing(session, channel, f"intake-alert-{row.alert_id}", "single",
                                                   [row], now))
                    continue
                last_sent = session.scalar(
                    select(func.max(AlertDelivery.sent_at)).where(
                        AlertDelivery.channel == channel, AlertDelivery.category == category,
                        AlertDelivery.state == SENT)
                )
                if last_sent is not None and (now - last_sent).total_seconds() < window:
                    continue  # the window is open: wait for its end
                oldest_created = rows_at[0][1]
                if last_sent is not None and oldest_created <= last_sent + dt.timedelta(seconds=window):
                    rows = [r for r, _ in rows_at]  # they arrived while the window was open: one digest
                    plan.append(self._outgoing(session, channel, f"intake-digest-{rows[0].id}", "digest", rows, now))
                else:
                    row = rows_at[0][0]  # after a quiet spell: the first goes out at once, alone
                    plan.append(self._outgoing(session, channel, f"intake-alert-{row.alert_id}", "single", [row], now))
        claimed = []
        for out in plan:
            try:
                self._claim(out, now)
            except _Lost:
                continue
            claimed.append(out)
        return claimed

    def _outgoing(self, session: Session, channel: str, batch: str, mode: str, rows: Sequence[AlertDelivery],
                  now: dt.datetime) -> Outgoing:
        alerts = {a.id: a for a in session.scalars(select(Alert).where(Alert.id.in_([r.alert_id for r in rows])))}
        names = self._filenames(session, [a.record_id for a in alerts.values() if a.record_id is not None])
        items = []
        for row in rows:
            alert = alerts[row.alert_id]
            filenames: tuple[str, ...] = ()
            if alert.record_id is not None and alert.kind in (events.KIND_RECORD, events.KIND_HELD):
                by_pos = names.get(alert.record_id, {})
                filenames = tuple(by_pos.get(int(a.get("position", -1)), "")
                                  for a in alert.payload.get("attachments") or [])
            items.append(Item(alert_id=alert.id, category=alert.category, kind=alert.kind,
                              created_at=alert.created_at, payload=dict(alert.payload), filenames=filenames))
        category = items[0].category
        if mode == "single":
            rendered = events.render_single(batch, items[0])
        else:
            window = self.settings.category(category).window_seconds
            rendered = events.render_digest(batch, items, window, self._burst_total(session, channel, category,
                                                                                    len(items)))
        return Outgoing(channel=channel, batch=batch, mode=mode, delivery_ids=[r.id for r in rows],
                        attempts=max(r.attempts for r in rows), rendered=rendered)

    def _filenames(self, session: Session, record_ids: list[int]) -> dict[int, dict[int, str]]:
        """File names are personal data (R12): read from the record at send time, only when allowed."""
        if not self.settings.include_filenames or not record_ids:
            return {}
        out: dict[int, dict[int, str]] = defaultdict(dict)
        for pk, pos, name in session.execute(
            select(Attachment.message_pk, Attachment.position, Attachment.filename)
            .where(Attachment.message_pk.in_(record_ids))
        ):
            out[pk][pos] = name or ""
        return out

    def _burst_total(self, session: Session, channel: str, category: str, count: int) -> int:
        """All alerts of this burst on this channel: those already sent since its first (single) alert, plus these."""
        started = session.scalar(
            select(func.max(AlertDelivery.sent_at)).where(
                AlertDelivery.channel == channel, AlertDelivery.category == category,
                AlertDelivery.state == SENT, AlertDelivery.mode == "single")
        )
        if started is None:
            return count
        sent = session.scalar(
            select(func.count()).select_from(AlertDelivery).where(
                AlertDelivery.channel == channel, AlertDelivery.category == category,
                AlertDelivery.state == SENT, AlertDelivery.sent_at >= started)
        )
        return int(sent or 0) + count

    def _claim(self, out: Outgoing, now: dt.datetime) -> None:
        until = now + dt.timedelta(seconds=self.settings.lease_seconds)
        with self.sessions.begin() as session:
            free = or_(AlertDelivery.claimed_until.is_(None), AlertDelivery.claimed_until <= now)
            same = or_(AlertDelivery.batch.is_(None), AlertDelivery.batch == out.batch)
            got = session.execute(
                update(AlertDelivery)
                .where(AlertDelivery.id.in_(out.delivery_ids), AlertDelivery.state == PENDING, free, same)
                .values(claimed_by=self.owner, claimed_until=until, batch=out.batch, mode=out.mode)
            ).rowcount
            if got != len(out.delivery_ids):
                raise _Lost  # rolls the partial claim back

    def finish(self, out: Outgoing, error: str | None, now: dt.datetime) -> None:
        mine = (AlertDelivery.id.in_(out.delivery_ids), AlertDelivery.claimed_by == self.owner)
        with self.sessions.begin() as session:
            if error is None:
                session.execute(update(AlertDelivery).where(*mine).values(
                    state=SENT, sent_at=now, claimed_by=None, claimed_until=None, last_error=None))
            else:
                delay = self.backoff(out.attempts + 1)
                session.execute(update(AlertDelivery).where(*mine).values(
                    attempts=AlertDelivery.attempts + 1, next_attempt_at=now + dt.timedelta(seconds=delay),
                    last_error=error[:200], claimed_by=None, claimed_until=None))
        if error is None:
            log.info("alert_sent", channel=out.channel, alert=out.batch, category=out.rendered.category,
                     count=len(out.delivery_ids), action=out.mode)
        else:
            log.warning("alert_delivery_failed", channel=out.channel, alert=out.batch,
                        category=out.rendered.category, error=error, attempts=out.attempts + 1,
                        backoff_s=self.backoff(out.attempts + 1), count=len(out.delivery_ids))

    # -- alerts raised while the database was down ---------------------------------------------------------
    async def _flush_volatile(self, now: dt.datetime) -> list[Result]:
        if self.monitor is None:
            return []
        results: list[Result] = []
        keep = []
        for draft, when in self.monitor.take_volatile():
            try:
                await asyncio.to_thread(enqueue_once, self.sessions, draft, when)
                continue  # the database is back: the normal path takes it from here
            except SQLAlchemyError:
                pass
            ref = f"intake-direct-{uuid.uuid4().hex[:12]}"
            item = Item(alert_id=0, category=draft.category, kind=draft.kind, created_at=when, payload=draft.payload)
            rendered = events.render_single(ref, item)
            delivered = False
            for name in self.settings.channels_for(draft.category):
                channel = self.channels.get(name)
                if channel is None:
                    continue
                try:
                    await channel.send(rendered)
                    delivered = delivered or name != "log"
                    results.append(Result(name, ref, True, 1))
                except ChannelError as exc:
                    results.append(Result(name, ref, False, 1, str(exc)))
            if not delivered and self.settings.channels_for(draft.category) != ("log",):
                keep.append((draft, when))
        if keep:
            self.monitor.keep_volatile(keep)
        return results

    # -- the task --------------------------------------------------------------------------------------------
    async def run(self, stop_event: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        log.info("alert_sender_started", channel=",".join(sorted(self.channels)))
        while not stop_event.is_set():
            self._wake.clear()
            try:
                await self.deliver_due()
            except SQLAlchemyError as exc:
                log.error("alert_sender_failed", error=exc.__class__.__name__)
                if self.monitor is not None:
                    await asyncio.to_thread(self.monitor.storage_failed, "database")
            except Exception as exc:
                log.error("alert_sender_failed", error=exc.__class__.__name__)
            waiters = {asyncio.ensure_future(stop_event.wait()), asyncio.ensure_future(self._wake.wait())}
            try:
                await asyncio.wait(waiters, timeout=self.settings.poll_seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        log.info("alert_sender_stopped")


async def run_sender(
    sessions: sessionmaker[Session],
    settings: AlertSettings,
    stop_event: asyncio.Event,
    *,
    channels: dict[str, Channel] | None = None,
    monitor: AlertMonitor | None = None,
) -> None:
    """The service's alert task: deliver the outbox until stop_event is set."""
    sender = Sender(sessions, settings, channels, monitor=monitor)
    if monitor is not None:
        monitor.on_alert = sender.wake
    await sender.run(stop_event)
