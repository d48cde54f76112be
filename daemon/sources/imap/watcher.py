"""The IMAP watcher: stay connected to one mailbox, and run a pass (daemon/sources/imap/sync.py) whenever
there may be mail.

Between passes it idles: IDLE where the server offers it (re-issued every imap.idle_interval), else a poll
every imap.poll_interval with a NOOP every imap.noop_interval. While records are still in flight it moves each
as it finishes and starts a new pass as soon as new mail shows. Any error (IMAP, the database, the raw store,
a bug) closes the connection, and the watcher reconnects with capped exponential backoff and jitter: never a
dead daemon.

With OAuth 2.0 (imap.auth = "oauth2") one `TokenSource` serves every connection. A connection lives only as
long as its token: before the token expires (imap.token_renew_seconds ahead, at most half its lifetime) the
watcher lets the records in flight finish and move, ends the IDLE, and reconnects with a fresh token, so the
server never holds a session whose token has lapsed. A refused token is retried like any error, with backoff,
and `Progress.problem` says "auth_failed" so that the mailbox_down alert names authentication.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from daemon.logs import get_logger
from daemon.sources.imap.config import ImapConfig
from daemon.sources.imap.progress import Progress
from daemon.sources.imap.session import FatalImapError, ImapError, ImapSession
from daemon.sources.imap.sync import MailboxSync, Recorder
from daemon.sources.imap.tokens import make_source

log = get_logger("imap")


class ImapWatcher:
    """Watches one mailbox until `stop` is set. Runs the sync pipeline in worker threads."""

    def __init__(self, cfg: ImapConfig, intake: Recorder, owner: str, stop: asyncio.Event,
                 run_in_thread: Callable[..., Awaitable[Any]], progress: Progress | None = None,
                 once: bool = False) -> None:
        self.cfg = cfg
        self.stop = stop
        self.kick = asyncio.Event()  # set by the retry loop when a held IMAP record settled
        self.progress = progress or Progress()
        self.once = once
        self.sync = MailboxSync(cfg, intake, owner, stop, run_in_thread, self.progress, once, lanes=self)
        self.session: ImapSession | None = None
        self.tokens = make_source(cfg.oauth2) if cfg.oauth2 is not None else None
        self.reauths = 0  # reconnects for a fresh token (tests, and the log)
        self.bytes_received = 0  # over all connections (tests: nothing big was downloaded)
        self.sent_commands: deque[str] = deque(maxlen=5000)
        self._failure_streak = 0
        self._attempt = 0

    # -- connection --------------------------------------------------------------------------------
    async def _connect(self) -> ImapSession:
        session = ImapSession(self.cfg, self.tokens)
        try:
            await session.open()
            await session.ensure_folders()
        except BaseException:
            self._account(session)
            await session.close()
            raise
        self.session = session
        self.progress.problem = None
        log.info("connected", uidvalidity=session.uidvalidity, detail=" ".join(sorted(
            c for c in session.capabilities if c in ("IDLE", "MOVE", "UIDPLUS", "QRESYNC", "CONDSTORE"))))
        return session

    async def open_lane(self) -> ImapSession:
        """The arrivals lane's connection (sync.py): the same server, login and token as the watcher's, with the
        mailbox opened read-only (EXAMINE): the lane only searches and fetches with BODY.PEEK; moves stay on the
        watcher's connection."""
        session = ImapSession(self.cfg, self.tokens)
        try:
            await session.open(readonly=True)
        except BaseException:
            await self.close_lane(session)
            raise
        return session

    async def close_lane(self, session: ImapSession) -> None:
        self._account(session)
        await session.close()

    def _account(self, session: ImapSession) -> None:
        if session.client is not None:
            proto = session.protocol
            self.bytes_received += proto.bytes_received
            self.sent_commands.extend(proto.sent)
            proto.bytes_received = 0
            proto.sent.clear()

    async def _disconnect(self) -> None:
        if self.session is not None:
            self._account(self.session)
            await self.session.close()
            self.session = None

    def _backoff(self, attempt: int) -> float:
        base = min(self.cfg.backoff_max, self.cfg.backoff_initial * (2 ** min(attempt, 30)))
        return min(self.cfg.backoff_max, base * random.uniform(0.5, 1.0) + random.uniform(0, self.cfg.backoff_initial))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def connect_first(self) -> None:
        """Connect at start; a few attempts with backoff, then FatalImapError with a clear reason."""
        attempt = 0
        while True:
            try:
                await self._connect()
                return
            except FatalImapError:
                raise
            except ImapError as exc:
                attempt += 1
                self.progress.problem = problem_of(exc)
                self.progress.error(str(exc))
                if attempt >= self.cfg.startup_attempts:
                    raise FatalImapError(f"{exc} (gave up after {attempt} attempts)") from None
                delay = self._backoff(attempt - 1)
                self.progress.set("reconnecting", f"reconnecting in {delay:.0f} s")
                log.warning("connect_failed", error=str(exc), attempts=attempt, backoff_s=round(delay, 1))
                await self._sleep(delay)
                if self.stop.is_set():
                    raise FatalImapError("stopped before the first connection") from None

    async def run(self) -> None:
        """Watch until stopped; after any error reconnect with capped exponential backoff and jitter."""
        while not self.stop.is_set():
            try:
                if self.session is None:
                    await self._connect()
                self.progress.connected = True
                await self._watch(self.session)  # type: ignore[arg-type]
                if self.once:
                    break
                if not self.stop.is_set() and self._token_due(self.session):
                    # Not an error: the token is about to lapse. Finish and move what is in flight, then a new
                    # connection with a fresh token, at once (no backoff).
                    await self.sync.drain(self.session, abandon_moves=False)
                    await self._disconnect()
                    self.reauths += 1
                    log.info("reconnect_for_token", count=self.reauths)
            except Exception as exc:
                # IMAP trouble, the database or raw store away, or a bug: never a dead daemon, a reconnect.
                text = str(exc) if isinstance(exc, ImapError) else f"{exc.__class__.__name__} in the watcher"
                if not isinstance(exc, ImapError | SQLAlchemyError | OSError):
                    log.error("watcher_failed", error=exc.__class__.__name__)
                self.progress.connected = False
                self.progress.problem = problem_of(exc)
                self.progress.error(text)
                await self.sync.drain(self.session, abandon_moves=True)
                await self._disconnect()
                if self.stop.is_set():
                    break
                delay = self._backoff(self._attempt)  # reset only by a pass that went through
                self._attempt += 1
                self.progress.set("reconnecting", f"reconnecting in {delay:.0f} s")
                log.warning("imap_error", error=text, attempts=self._attempt, backoff_s=round(delay, 1))
                await self._sleep(delay)
        await self.sync.drain(self.session, abandon_moves=False)
        await self._disconnect()

    # -- watching ----------------------------------------------------------------------------------
    def _token_due(self, session: ImapSession | None) -> bool:
        due = session.reauth_at if session is not None else None
        return due is not None and time.time() >= due

    def _bounded(self, seconds: float, session: ImapSession) -> float:
        """`seconds`, or less when the session's token must be renewed before then."""
        due = session.reauth_at
        return seconds if due is None else max(0.05, min(seconds, due - time.time()))

    async def _watch(self, session: ImapSession) -> None:
        sync = self.sync
        while not self.stop.is_set():
            if self._token_due(session):
                return  # run() reconnects with a fresh token
            if sync.failures:
                # Recording failed (the database or raw store is down?): let the rest finish, wait, fetch again.
                await sync.drain(session, abandon_moves=False)
                self._failure_streak += 1
                delay = self._backoff(self._failure_streak - 1)
                self.progress.set("retrying", f"{sync.failures} not recorded, retrying in {delay:.0f} s")
                sync.failures = 0
                await self._sleep(delay)
                if self.stop.is_set():
                    return
            session.protocol.new_mail = False
            self.kick.clear()
            did = await sync.sync_pass(session)
            self._attempt = 0
            self.progress.ready = True
            if self.stop.is_set():
                return
            if sync.failures:
                continue
            self._failure_streak = 0
            if session.protocol.new_mail or (did and not sync.tasks):
                continue  # mail came in during the pass (or it did work): look again before idling
            if sync.tasks:
                # Records still being made (a big message, say): move each as it finishes, and start on new
                # mail as soon as it shows, instead of letting it wait for the slowest message of the last pass.
                await self._while_in_flight(session)
                continue
            if self.once:
                return
            pending = self.progress.held_in_mailbox
            self.progress.set("idle", f"idle, {pending} pending")
            if self.cfg.use_idle and "IDLE" in session.capabilities:
                waker = asyncio.Event()
                relay = asyncio.ensure_future(self._relay(waker))
                try:
                    reason = await session.idle(self._bounded(self.cfg.idle_interval, session), waker)
                finally:
                    relay.cancel()
                log.debug("idle_end", detail=reason)
            else:
                await self._wait_poll(session)

    async def _while_in_flight(self, session: ImapSession) -> None:
        """Until the records in flight are done, new mail shows, or a stop/kick: flush moves as records finish."""
        sync = self.sync
        idle = self.cfg.use_idle and "IDLE" in session.capabilities
        while sync.tasks and not (self.stop.is_set() or self.kick.is_set() or session.protocol.new_mail
                                  or self._token_due(session)):
            sync.progressed.clear()
            await sync.settle(session)
            if not sync.tasks or sync.failures:
                return
            waker = asyncio.Event()
            relay = asyncio.ensure_future(self._relay(waker, sync.progressed))
            try:
                if idle:
                    if await session.idle(self._bounded(self.cfg.noop_interval, session), waker) == "push":
                        return  # new mail: a pass takes it now, beside the records still in flight
                else:
                    with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                        await asyncio.wait_for(waker.wait(), self._bounded(self.cfg.noop_interval, session))
                    await session.noop()  # answers with EXISTS when mail came in
                    if session.protocol.new_mail:
                        return
            finally:
                relay.cancel()
        await sync.settle(session)

    async def _relay(self, waker: asyncio.Event, *more: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in (self.stop, self.kick, *more)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            waker.set()
        finally:
            for w in waits:
                w.cancel()

    async def _wait_poll(self, session: ImapSession) -> None:
        deadline = time.monotonic() + self._bounded(self.cfg.poll_interval, session)
        while not self.stop.is_set() and not self.kick.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            waker = asyncio.Event()
            relay = asyncio.ensure_future(self._relay(waker))
            try:
                with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                    await asyncio.wait_for(waker.wait(), min(left, self.cfg.noop_interval))
            finally:
                relay.cancel()
            if not waker.is_set():
                await session.noop()  # keep the connection alive between polls


def problem_of(exc: BaseException) -> str:
    """What the mailbox_down alert says: authentication, a refused login, or unreachable."""
    if isinstance(exc, ImapError) and exc.auth:
        return "auth_failed"
    return "unreachable"
