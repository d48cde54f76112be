"""One pass over the mailbox, and the records it leaves in flight: the walk of one message, top to bottom.

1. `UID SEARCH ALL`; the UIDs that already have a record are not fetched again (a `held` one stays
   in the inbox untouched; a settled one that is still there is moved now).
2. The rest are claimed in the database (daemon/store/claims.py), in batches small enough for
   aioimaplib, and `UID FETCH (UID RFC822.SIZE INTERNALDATE)` gives each one's size and arrival time.
3. The size decision (R3), asked of daemon/stages/size.py before anything is downloaded: over the limit,
   only `BODY.PEEK[HEADER]` is fetched and the record is rejected/too_large with the declared size;
   otherwise `BODY.PEEK[]` (never `RFC822`, which sets \\Seen), several small messages in one command.
4. `Intake.process` (in a worker thread) returns its Outcome once the record is durable; only then is the
   message moved (`UID MOVE`, or COPY + \\Deleted + UID EXPUNGE) to the folder for its status, and its
   claim let go.

Records are made side by side, at most imap.max_in_flight messages and imap.max_in_flight_bytes of them at
once; a pass does not wait for the slowest: the watcher moves each record as it finishes. The rules are read
from the intake at each decision and never kept here: a SIGHUP reload replaces them between two messages.

New mail does not wait behind a backlog: while a pass works through the UIDs it found at its start, it looks
for UIDs above them every ARRIVALS_EVERY seconds and takes those first, small ones with PRIORITY_SLOTS places
of their own beyond max_in_flight; while any of them is in flight the backlog keeps an eighth of its places, at
least one (BACKLOG_SHARE), so that they share clamd and the CPU with fewer records (and steady arrivals never stop
the backlog).
A deadline day is a backlog plus steady arrivals; before, a mail arriving during a pass waited for the whole
pass (p95 26–34 s with a 300-message backlog in `python -m bench --arrivals-during-backlog`).

Those looks come between two backlog groups, on the pass's own connection: behind a big body fetch and the
wait for a place, a look came every 0.3 s at the median and 0.5–0.6 s at p95. So while a pass has more than
max_in_flight messages before it, new mail has a connection of its own (the *arrivals lane*, imap.arrivals_connection):
opened read-only (EXAMINE) beside the pass's, it looks every LANE_EVERY seconds, claims, sizes and fetches new
mail itself, and the pass stops looking. Records, moves and claims stay shared, so a UID is still taken once. If
the lane's connection fails, the pass looks again as before; the lane is closed when the pass ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from daemon.logs import get_logger
from daemon.model import HELD, Arrival, Outcome
from daemon.rules import Rules
from daemon.sources.imap.config import ImapConfig
from daemon.sources.imap.progress import Progress
from daemon.sources.imap.responses import Meta
from daemon.sources.imap.session import ImapError, ImapSession
from daemon.stages.size import too_large
from daemon.store import claims
from daemon.store.claims import ImapKey

log = get_logger("imap")

FETCH_GROUP = 16  # small messages per UID FETCH BODY.PEEK[] (one round trip)
FETCH_GROUP_BYTES = 2 * 1024 * 1024
HEADER_WEIGHT = 64 * 1024  # what a too-large message weighs in flight: its header block only
ARRIVALS_EVERY = 0.25  # seconds between two looks for new mail while a pass works through its backlog
PRIORITY_SLOTS = 4  # in-flight places beyond max_in_flight for new small mail found during a pass
BACKLOG_SHARE = 8  # while new mail is in flight the backlog keeps max_in_flight // BACKLOG_SHARE places (at least 1)
LANE_EVERY = 0.1  # seconds between two looks of the arrivals lane (one UID SEARCH on its own connection)


class Recorder(Protocol):
    """What a pass needs of daemon.pipeline.Intake: the rules of the moment, the database, and `process`."""

    rules: Rules
    sessions: sessionmaker[Session]

    def process(self, arrival: Arrival) -> Outcome: ...


class Lanes(Protocol):
    """How the arrivals lane gets its connection (the watcher's, with its TLS, login and token): opened with the
    mailbox selected read-only, closed (and its traffic accounted) when the pass ends or the lane fails."""

    async def open_lane(self) -> ImapSession: ...

    async def close_lane(self, session: ImapSession) -> None: ...


class MailboxSync:
    """The messages of one watcher from their claim to their move: the passes over the mailbox, the records
    in flight (`tasks`), the moves waiting to be sent (`moves`) and the claims still to let go."""

    def __init__(self, cfg: ImapConfig, intake: Recorder, owner: str, stop: asyncio.Event,
                 run_in_thread: Callable[..., Awaitable[Any]], progress: Progress, once: bool,
                 lanes: Lanes | None = None) -> None:
        self.cfg = cfg
        self.intake = intake
        self.owner = owner
        self.stop = stop
        self.thread = run_in_thread
        self.progress = progress
        self.once = once
        self.tasks: set[asyncio.Task[Any]] = set()
        self.moves: dict[str, set[int]] = {}  # status → UIDs recorded and not yet moved
        self.progressed = asyncio.Event()  # set when a record finishes (its move can go)
        self.failures = 0  # records that failed (the database or raw store away?) since the watcher looked
        self._in_flight_uids: set[int] = set()  # being recorded: a later pass must not take them again
        self._in_flight_bytes = 0
        self._done_uids: list[int] = []
        # While a pass runs: the highest UID it has seen, its `recognise`, and when it last looked for new mail.
        self._high: int | None = None
        self._recognise = False
        self._looked_at = 0.0
        self._quiet_since = time.monotonic()  # the last record finished or NOOP sent, for wait_some's NOOP
        self._fresh: set[asyncio.Task[Any]] = set()  # records of new mail found during a pass, still in flight
        self.lanes = lanes if cfg.arrivals_connection and not once else None
        self._lane: ImapSession | None = None  # the arrivals lane's connection while it is open and sound
        self._taking = False  # a take of new mail is under way (the lane's and the pass's never overlap)
        self.lanes_opened = 0  # how many passes had a lane (tests; the log has `arrivals_lane`)

    # -- 1–2. search, skip what is recorded, claim, fetch size and date ----------------------------
    async def sync_pass(self, session: ImapSession) -> bool:
        """Process the mailbox once. Returns True when it recorded or moved anything."""
        uv = session.uidvalidity
        uids = await session.search_all()
        known = await self._claims(claims.recorded, uv, uids)
        new = [u for u in uids if u not in known and u not in self._in_flight_uids]
        held = [u for u, (_rid, status) in known.items() if status == HELD]
        self.progress.held_in_mailbox = len(held)
        self.progress.backlog = len(new)
        did = await self._move_recorded(session, uv, known)
        # After a UIDVALIDITY change new UIDs may be mail recorded before: each is recognised by its content.
        recognise = bool(new) and await self._claims(claims.has_other_uidvalidity, uv)
        self._high, self._recognise, self._looked_at = max(uids, default=0), recognise, time.monotonic()
        passing = asyncio.Event()  # set when the pass is through: the lane then closes
        lane = (asyncio.ensure_future(self._arrivals_lane(uv, passing))
                if self.lanes is not None and len(new) > self.cfg.max_in_flight else None)
        try:
            did = await self._work_through(session, uv, new, recognise) or did
        finally:
            passing.set()
            if lane is not None:
                if self._lane is None:
                    lane.cancel()  # still connecting (or already failed): it has claimed nothing
                await asyncio.wait({lane})  # it ends its take (its records stay in flight) and closes
            self._high = None
        if self.once:
            await self.drain(session, abandon_moves=False)
        # Otherwise the records still in flight finish on their own: the watch loop moves them as they do.
        await self._release_done(uv)
        self.progress.last_poll_at = dt.datetime.now(dt.UTC)
        self.progress.backlog = 0 if not self.stop.is_set() else self.progress.backlog
        return did

    async def _work_through(self, session: ImapSession, uv: int, new: list[int], recognise: bool) -> bool:
        """Claim, size up and start the records of `new` in UID order, new arrivals first (see the docstring)."""
        cfg, did, done, total = self.cfg, False, 0, len(new)
        for start in range(0, len(new), cfg.batch_size):
            if self.stop.is_set():
                break
            chunk = new[start : start + cfg.batch_size]
            metas = await self._claim_and_size(session, uv, chunk)
            i = 0
            while i < len(metas):
                group = self._next_group(metas, i)
                await self._take_arrivals(session)
                await self._wait_capacity(session, group)
                if self.stop.is_set():
                    await self._release(uv, [m.uid for m in metas[i:]])
                    break
                self.progress.set("ingesting", f"ingesting {done + len(group)}/{total}")
                await self._start_group(session, group, recognise)
                did = True
                done += len(group)
                i += len(group)
            done += len(chunk) - len(metas)
            # Move what is recorded before letting go of its claims (see claims.claim_recorded).
            if self.moves:
                await self._flush_moves(session)
            await self._release_done(uv)
        return did

    async def _claim_and_size(self, session: ImapSession, uv: int, chunk: list[int]) -> list[Meta]:
        """Claim the UIDs of `chunk` and fetch the size and date of those this daemon got; the ones expunged
        meanwhile (another daemon moved them) are let go."""
        claimed = await self._claims(claims.claim_many, uv, chunk, self.owner, self.cfg.lease_seconds)
        mine = [u for u in chunk if claimed.get(u) == claims.CLAIMED]
        metas = await session.fetch_meta(mine)
        gone = set(mine) - {m.uid for m in metas}
        if gone:
            await self._release(uv, sorted(gone))
        return metas

    async def _arrivals_lane(self, uv: int, passing: asyncio.Event) -> None:
        """The arrivals lane (see the module docstring): its own connection looks every LANE_EVERY seconds until
        the pass is through. Any failure closes it and the pass looks again itself: never a failed pass."""
        assert self.lanes is not None
        session: ImapSession | None = None
        try:
            session = await self.lanes.open_lane()
            if session.uidvalidity != uv:
                raise ImapError("lane_uidvalidity_changed")  # the next pass sees the change and sorts it out
            self._lane = session
            self.lanes_opened += 1
            log.info("arrivals_lane", detail="open")
            while not (passing.is_set() or self.stop.is_set()):
                await self._take_arrivals(session, LANE_EVERY)
                # asyncio.wait, not wait_for: on 3.11 wait_for can swallow a cancellation (bpo-42130)
                waiter = asyncio.ensure_future(passing.wait())
                try:
                    await asyncio.wait({waiter}, timeout=LANE_EVERY)
                finally:
                    waiter.cancel()
        except Exception as exc:  # IMAP, the database, a bug: the pass goes on and looks for new mail itself
            log.warning("arrivals_lane_failed", error=str(exc)[:120] if isinstance(exc, ImapError)
                        else exc.__class__.__name__)
        finally:
            self._lane = None
            if session is not None:
                with contextlib.suppress(Exception):
                    await self.lanes.close_lane(session)

    async def _take_arrivals(self, session: ImapSession, every: float = ARRIVALS_EVERY) -> None:
        """During a pass, at most every `every` seconds: the UIDs above all this pass has seen are claimed and
        started now, ahead of the rest of the backlog; small ones need not wait for a place. While the arrivals
        lane is open only the lane looks."""
        if (self._high is None or time.monotonic() - self._looked_at < every or self.stop.is_set()
                or self._taking or (self._lane is not None and session is not self._lane)):
            return
        self._taking, high = True, self._high
        try:
            await self._take_new(session)
        except BaseException:
            # The lane failed mid-take: what it claimed and did not start is looked for again from the old mark
            # (what did start is in flight and skipped; our own claims are taken again).
            if self._high is not None:
                self._high = high
            raise
        finally:
            self._taking = False

    async def _take_new(self, session: ImapSession) -> None:
        assert self._high is not None
        now = time.monotonic()
        since, self._looked_at = now - self._looked_at, now
        uv, high = session.uidvalidity, self._high
        fresh = [u for u in await session.search_from(high + 1) if u > high and u not in self._in_flight_uids]
        if not fresh:
            return
        self._high = max(fresh)
        # Timings only (ms), for the bench's profile of new mail's pickup: how late this look came, the search,
        # and below the claim with the size fetch, the wait for a place, and the body fetch.
        found = time.monotonic()
        log.info("arrivals_first", count=len(fresh), since_last_look_ms=round(since * 1000),
                 search_ms=round((found - now) * 1000))
        spent = {"claim": 0.0, "wait": 0.0, "fetch": 0.0}
        for start in range(0, len(fresh), self.cfg.batch_size):
            t = time.monotonic()
            metas = await self._claim_and_size(session, uv, fresh[start : start + self.cfg.batch_size])
            spent["claim"] += time.monotonic() - t
            i = 0
            while i < len(metas):
                group = self._next_group(metas, i)
                small = all(self._weight(m) <= FETCH_GROUP_BYTES for m in group)
                t = time.monotonic()
                await self._wait_capacity(session, group, priority=small)
                spent["wait"] += time.monotonic() - t
                if self.stop.is_set():
                    await self._release(uv, [m.uid for m in metas[i:]])
                    return
                before = set(self.tasks)
                t = time.monotonic()
                await self._start_group(session, group, self._recognise)
                spent["fetch"] += time.monotonic() - t
                self._fresh |= self.tasks - before
                i += len(group)
        log.info("arrivals_taken", count=len(fresh), **{f"{k}_ms": round(v * 1000) for k, v in spent.items()})

    async def _move_recorded(self, session: ImapSession, uv: int, known: dict[int, tuple[int, str]]) -> bool:
        """Recorded but still here: moved by whoever claims them (not, at the same time, by the daemon that
        recorded them, which keeps its claim until its own move is done). True when anything was moved."""
        settled = sorted(u for u, (_rid, status) in known.items() if status != HELD)
        if not settled:
            return False
        mine = await self._claims(claims.claim_recorded, uv, settled, self.owner, self.cfg.lease_seconds)
        for uid in mine:
            self.moves.setdefault(known[uid][1], set()).add(uid)
        did = bool(self.moves)
        if self.moves:
            await self._flush_moves(session)
        if mine:
            await self._release(uv, mine)
        return did

    # -- 3. the size decision, the memory bound, the download ---------------------------------------
    def _weight(self, meta: Meta) -> int:
        """The memory a message takes while in flight: a too-large one is only its header block."""
        return HEADER_WEIGHT if too_large(meta.size, self.intake.rules) else meta.size

    def _next_group(self, metas: list[Meta], start: int) -> list[Meta]:
        """Small messages are fetched several at a time (one round trip); a big one alone."""
        group = [metas[start]]
        budget = min(FETCH_GROUP_BYTES, self.cfg.max_in_flight_bytes)
        total = self._weight(metas[start])
        if too_large(metas[start].size, self.intake.rules):
            return group
        for meta in metas[start + 1 :]:
            weight = self._weight(meta)
            # at most half the in-flight slots, so the next group downloads while this one is recorded
            if (len(group) >= min(FETCH_GROUP, max(1, self.cfg.max_in_flight // 2)) or total + weight > budget
                    or too_large(meta.size, self.intake.rules)):
                break
            group.append(meta)
            total += weight
        return group

    async def _wait_capacity(self, session: ImapSession, group: list[Meta], priority: bool = False) -> None:
        """At most max_in_flight messages, and max_in_flight_bytes of them, in memory at once (new small mail
        found during a pass: PRIORITY_SLOTS and one fetch group more); NOOP every noop_interval while waiting
        (long processing must not let the server drop us). A backlog group's wait looks for new mail too."""
        need = sum(self._weight(m) for m in group)
        slots = self.cfg.max_in_flight + (PRIORITY_SLOTS if priority else 0)
        room = self.cfg.max_in_flight_bytes + (FETCH_GROUP_BYTES if priority else 0)
        while self.tasks and (len(self.tasks) + len(group) > slots or self._in_flight_bytes + need > room
                              or (not priority and self._backlog_yields(len(group)))):
            if priority or self._high is None:
                await self.wait_some(session)
            else:  # a backlog group: look for new mail while the records in flight take their time
                await self.wait_some(session, ARRIVALS_EVERY)
                await self._take_arrivals(session)

    def _backlog_yields(self, adding: int) -> bool:
        """While new mail found during a pass is in flight, the backlog keeps an eighth of max_in_flight: the new
        mail shares the CPU and the GIL with fewer records, and steady arrivals cannot stop the backlog altogether."""
        fresh = self._fresh & self.tasks
        keep = max(1, self.cfg.max_in_flight // BACKLOG_SHARE)
        return bool(fresh) and len(self.tasks) - len(fresh) + adding > keep

    async def wait_some(self, session: ImapSession, every: float | None = None) -> None:
        """Until a record in flight finishes, or `every` seconds (noop_interval by default) have passed; a NOOP
        keeps the connection once noop_interval has passed without a record finishing or a NOOP."""
        done, _ = await asyncio.wait(set(self.tasks), timeout=every or self.cfg.noop_interval,
                                     return_when=asyncio.FIRST_COMPLETED)
        if done:
            self._quiet_since = time.monotonic()
        elif time.monotonic() - self._quiet_since >= self.cfg.noop_interval:
            await session.noop()
            self._quiet_since = time.monotonic()
        self.progress.in_flight = len(self.tasks)

    async def _start_group(self, session: ImapSession, group: list[Meta], recognise: bool) -> None:
        cfg = self.cfg
        # Decide before downloading: a too-large message gives its header block only, never its body. A too-large
        # message always travels alone (_next_group); a group of several was lawful when it was formed, and if a
        # reload lowered the limit since, it is fetched whole and the pipeline's size stage judges each message.
        header_only = len(group) == 1 and too_large(group[0].size, self.intake.rules)
        timeout = cfg.command_timeout + sum(m.size for m in group) / (256 * 1024)  # ≥ 256 KiB/s for big bodies
        if header_only:
            header = await session.fetch_literal(group[0].uid, "HEADER", timeout)
            bodies = {group[0].uid: header} if header is not None else {}
        else:
            bodies = await session.fetch_bodies([m.uid for m in group], timeout)
        gone = [m.uid for m in group if m.uid not in bodies]
        if gone:
            await self._release(session.uidvalidity, gone)
        for meta in group:
            raw = bodies.get(meta.uid)
            if raw is not None:
                self._start_one(ImapKey(cfg.account, cfg.mailbox, session.uidvalidity, meta.uid), meta, raw,
                                header_only, recognise)

    # -- 4. the record, in a worker thread ----------------------------------------------------------
    def _start_one(self, key: ImapKey, meta: Meta, raw: bytes, header_only: bool, recognise: bool) -> None:
        weight = len(raw)
        self._in_flight_bytes += weight
        self._in_flight_uids.add(key.uid)
        task = asyncio.ensure_future(self.thread(self._record, key, raw, meta, header_only, recognise))
        self.tasks.add(task)
        self.progress.in_flight = len(self.tasks)

        def finished(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            self._fresh.discard(t)
            self._in_flight_uids.discard(key.uid)
            self._in_flight_bytes -= weight
            self.progressed.set()
            self._done_uids.append(key.uid)  # its claim is released in bulk at the end of the chunk
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                self.failures += 1
                self.progress.error(f"record_failed:{exc}")
                log.error("record_failed", uid=meta.uid, error=str(exc)[:120])
                return
            _rid, status = t.result()
            if status != HELD:
                self.moves.setdefault(status, set()).add(meta.uid)

        task.add_done_callback(finished)

    def _record(self, key: ImapKey, raw: bytes, meta: Meta, header_only: bool, recognise: bool) -> tuple[int, str]:
        """In a worker thread: the record, durable when this returns."""
        sessions = self.intake.sessions
        if recognise:
            sha = None if header_only else hashlib.sha256(raw).hexdigest()
            known = claims.rekey(sessions, key, sha, meta.size, meta.internaldate)
            if known is not None:
                log.info("recognised", record=known[0], uid=key.uid, uidvalidity=key.uidvalidity, status=known[1])
                return known
        arrival = Arrival(raw=raw, source="imap", received_at=meta.internaldate,
                          received_source="imap_internaldate" if meta.internaldate else None,
                          imap=key.as_dict(), size=meta.size if header_only else None)
        outcome = self.intake.process(arrival)
        return outcome.id, outcome.status

    # -- 5. moves, and letting go of claims ---------------------------------------------------------
    async def _flush_moves(self, session: ImapSession) -> None:
        for status in list(self.moves):
            uids = sorted(self.moves.get(status, ()))
            for start in range(0, len(uids), self.cfg.batch_size):
                part = uids[start : start + self.cfg.batch_size]
                await session.move(part, status)
                self.moves[status].difference_update(part)
                log.info("moved", folder=status, count=len(part))
            if not self.moves.get(status):
                self.moves.pop(status, None)

    async def settle(self, session: ImapSession) -> None:
        """Move what is recorded, then let go of the claims of what is done."""
        if self.moves:
            await self._flush_moves(session)
        await self._release_done(session.uidvalidity)

    async def _release_done(self, uidvalidity: int) -> None:
        """Release the claims of recorded messages (their records now keep them from being taken twice)."""
        # A message whose move is still pending keeps its claim (another daemon would move it too).
        pending: set[int] = set().union(*self.moves.values()) if self.moves else set()
        done = [u for u in self._done_uids if u not in pending]
        self._done_uids = [u for u in self._done_uids if u in pending]
        if done:
            await self._release(uidvalidity, done)

    async def drain(self, session: ImapSession | None, abandon_moves: bool) -> None:
        """Wait for every record in flight, and move them unless `abandon_moves` (or the connection fails)."""
        while self.tasks:
            if session is not None and not abandon_moves:
                try:
                    await self.wait_some(session)
                    continue
                except ImapError:
                    abandon_moves = True
            await asyncio.wait(set(self.tasks))
        if abandon_moves:
            self.moves.clear()  # the next pass finds them recorded and moves them
        elif session is not None and self.moves:
            await self._flush_moves(session)
        self.progress.in_flight = 0

    # -- the claims of this account and mailbox, in a worker thread --------------------------------
    async def _claims(self, fn: Callable[..., Any], uidvalidity: int, *args: Any) -> Any:
        return await self.thread(fn, self.intake.sessions, self.cfg.account, self.cfg.mailbox, uidvalidity, *args)

    async def _release(self, uidvalidity: int, uids: list[int]) -> None:
        await self._claims(claims.release_uids, uidvalidity, uids, self.owner)
