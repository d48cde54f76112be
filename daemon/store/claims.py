"""Claims and leases: which daemon works on which IMAP message or held record, and for how long.

Exactly-once rests on the records themselves: `messages` has a unique (account, mailbox,
UIDVALIDITY, UID) and `Intake.process` returns the existing record for a key that is recorded. The
claims here only keep two daemons (or a daemon and its killed predecessor) from downloading and
scanning the same message at once:

- an IMAP message without a record is claimed in `imap_claims` inside one transaction, with a lease;
- a held record is claimed for a retry through `messages.lease_owner` / `lease_until`;
- a live daemon renews its leases; a dead one's leases expire, and on start a daemon releases at once
  the leases of dead processes on its own host (kill -9, then restart).

Owner ids are "<host>:<pid>:<nonce>".
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from daemon.model import HELD
from daemon.store.db import Event, ImapClaim, Message, ServiceHealth, now_utc

CLAIMED = "claimed"
RECORDED = "recorded"
BUSY = "busy"
_CHUNK = 500  # keys per IN (...) query


@dataclass(frozen=True)
class ImapKey:
    account: str
    mailbox: str
    uidvalidity: int
    uid: int

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account, "mailbox": self.mailbox, "uidvalidity": self.uidvalidity, "uid": self.uid}


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _chunks(items: list[int], size: int = _CHUNK) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# -- what is recorded -------------------------------------------------------------------------------
def recorded(sessions: sessionmaker[Session], account: str, mailbox: str, uidvalidity: int,
             uids: list[int]) -> dict[int, tuple[int, str]]:
    """uid → (record id, status) for the UIDs of this mailbox that already have a record."""
    out: dict[int, tuple[int, str]] = {}
    with sessions() as session:
        for chunk in _chunks(uids):
            rows = session.execute(
                select(Message.imap_uid, Message.id, Message.status).where(
                    Message.imap_account == account, Message.imap_mailbox == mailbox,
                    Message.imap_uidvalidity == uidvalidity, Message.imap_uid.in_(chunk))
            )
            for uid, rid, status in rows:
                out[int(uid)] = (int(rid), str(status))
    return out


def has_other_uidvalidity(sessions: sessionmaker[Session], account: str, mailbox: str, uidvalidity: int) -> bool:
    """Were messages of this mailbox recorded under another UIDVALIDITY (the mailbox was recreated)?"""
    with sessions() as session:
        # Two range probes on uq_messages_imap (account, mailbox, uidvalidity, …): `!=` would read every
        # record of the mailbox, on every pass.
        base = [Message.imap_account == account, Message.imap_mailbox == mailbox]
        return any(session.scalar(select(Message.id).where(*base, other).limit(1)) is not None
                   for other in (Message.imap_uidvalidity < uidvalidity, Message.imap_uidvalidity > uidvalidity))


def find_previous_arrival(session: Session, key: ImapKey, sha256: str | None, size: int,
                          received_at: dt.datetime | None) -> Message | None:
    """The record of this very arrival made under an earlier UIDVALIDITY of the same mailbox.

    A downloaded message is the same arrival when its exact bytes are (sha256, Received fields
    included: a second delivery differs in them and is a duplicate, not this). A too-large one was
    never downloaded: the same declared size and INTERNALDATE."""
    query = select(Message).where(
        Message.imap_account == key.account, Message.imap_mailbox == key.mailbox,
        Message.imap_uidvalidity != key.uidvalidity, Message.source == "imap",
    )
    if sha256 is not None:
        query = query.where(Message.sha256 == sha256)
    else:
        if received_at is None:
            return None
        query = query.where(Message.sha256.is_(None), Message.size == size, Message.received_at == received_at)
    return session.scalars(query.order_by(Message.id).limit(1)).first()


def rekey(sessions: sessionmaker[Session], key: ImapKey, sha256: str | None, size: int,
          received_at: dt.datetime | None) -> tuple[int, str] | None:
    """After a UIDVALIDITY change: point the earlier record of this arrival at its new IMAP key, with an
    event, instead of recording it again. Returns (record id, status), or None when it is new mail."""
    with sessions.begin() as session:
        prev = find_previous_arrival(session, key, sha256, size, received_at)
        if prev is None:
            return None
        note = f"imap key uidvalidity {prev.imap_uidvalidity} uid {prev.imap_uid} -> {key.uidvalidity} uid {key.uid}"
        prev.imap_uidvalidity, prev.imap_uid = key.uidvalidity, key.uid
        session.add(Event(message_pk=prev.id, at=now_utc(), action="imap_rekey", status=prev.status,
                          reasons=list(prev.reasons or []), actor="intake", note=note))
        session.execute(delete(ImapClaim).where(*_claim_key(key)))
        return prev.id, prev.status


# -- IMAP claims ------------------------------------------------------------------------------------
def _claim_key(key: ImapKey) -> list[Any]:
    return [ImapClaim.account == key.account, ImapClaim.mailbox == key.mailbox,
            ImapClaim.uidvalidity == key.uidvalidity, ImapClaim.uid == key.uid]


def claim_many(sessions: sessionmaker[Session], account: str, mailbox: str, uidvalidity: int, uids: list[int],
               owner: str, lease_seconds: float) -> dict[int, str]:
    """Claim these UIDs in one transaction: uid → CLAIMED (ours now), RECORDED (has a record) or
    BUSY (another live daemon holds it)."""
    now = now_utc()
    until = now + dt.timedelta(seconds=lease_seconds)
    result: dict[int, str] = {}
    with sessions.begin() as session:
        for chunk in _chunks(uids):
            done = set(session.scalars(
                select(Message.imap_uid).where(
                    Message.imap_account == account, Message.imap_mailbox == mailbox,
                    Message.imap_uidvalidity == uidvalidity, Message.imap_uid.in_(chunk))
            ))
            for uid in done:
                result[int(uid)] = RECORDED
            base = [ImapClaim.account == account, ImapClaim.mailbox == mailbox, ImapClaim.uidvalidity == uidvalidity]
            if done:
                # A recorded message's claim is only cleaned up once its lease ran out (or it is ours): the
                # daemon that recorded it keeps it until its IMAP move is done (see claim_recorded).
                session.execute(delete(ImapClaim).where(
                    *base, ImapClaim.uid.in_(list(done)), or_(ImapClaim.lease_until < now, ImapClaim.owner == owner)))
            todo = [u for u in chunk if u not in done]
            if todo:
                result.update(_take(session, base, account, mailbox, uidvalidity, todo, owner, now, until))
    return result


def claim_recorded(sessions: sessionmaker[Session], account: str, mailbox: str, uidvalidity: int, uids: list[int],
                   owner: str, lease_seconds: float) -> list[int]:
    """Claim recorded messages still in the mailbox, to move them: two daemons that MOVE the same UID at once
    can both copy it before either expunges it, leaving two copies in the target folder."""
    now = now_utc()
    until = now + dt.timedelta(seconds=lease_seconds)
    mine: list[int] = []
    with sessions.begin() as session:
        base = [ImapClaim.account == account, ImapClaim.mailbox == mailbox, ImapClaim.uidvalidity == uidvalidity]
        for chunk in _chunks(uids):
            got = _take(session, base, account, mailbox, uidvalidity, chunk, owner, now, until)
            mine.extend(u for u in chunk if got.get(u) == CLAIMED)
    return mine


def _take(session: Session, base: list[Any], account: str, mailbox: str, uidvalidity: int, uids: list[int],
          owner: str, now: dt.datetime, until: dt.datetime) -> dict[int, str]:
    result: dict[int, str] = {}
    # Expired leases, and our own, are taken over (a conditional UPDATE: atomic on PostgreSQL too).
    session.execute(
        update(ImapClaim)
        .where(*base, ImapClaim.uid.in_(uids), or_(ImapClaim.lease_until < now, ImapClaim.owner == owner))
        .values(owner=owner, lease_until=until, claimed_at=now)
    )
    held = {int(u): o for u, o in session.execute(
        select(ImapClaim.uid, ImapClaim.owner).where(*base, ImapClaim.uid.in_(uids)))}
    for uid, held_by in held.items():
        result[uid] = CLAIMED if held_by == owner else BUSY
    missing = [u for u in uids if u not in held]
    if missing:
        # One INSERT … ON CONFLICT DO NOTHING RETURNING for all of them (a savepoint and an INSERT per UID before:
        # three round trips each, on the path of every new mail). A UID another daemon inserted a moment ago
        # conflicts and is not returned: BUSY.
        rows = [{"account": account, "mailbox": mailbox, "uidvalidity": uidvalidity, "uid": uid, "owner": owner,
                 "lease_until": until, "claimed_at": now} for uid in missing]
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        got = set(session.scalars(insert(ImapClaim).values(rows).on_conflict_do_nothing()
                                  .returning(ImapClaim.uid)))
        for uid in missing:
            result[uid] = CLAIMED if uid in got else BUSY
    return result


def release(sessions: sessionmaker[Session], key: ImapKey, owner: str) -> None:
    with sessions.begin() as session:
        session.execute(delete(ImapClaim).where(*_claim_key(key), ImapClaim.owner == owner))


def release_uids(sessions: sessionmaker[Session], account: str, mailbox: str, uidvalidity: int, uids: list[int],
                 owner: str) -> None:
    with sessions.begin() as session:
        for chunk in _chunks(uids):
            session.execute(delete(ImapClaim).where(
                ImapClaim.account == account, ImapClaim.mailbox == mailbox, ImapClaim.uidvalidity == uidvalidity,
                ImapClaim.uid.in_(chunk), ImapClaim.owner == owner))


def renew(sessions: sessionmaker[Session], owner: str, lease_seconds: float) -> None:
    """Extend every lease this daemon holds (IMAP claims and held-record retries)."""
    until = now_utc() + dt.timedelta(seconds=lease_seconds)
    with sessions.begin() as session:
        session.execute(update(ImapClaim).where(ImapClaim.owner == owner).values(lease_until=until))
        session.execute(update(Message).where(Message.lease_owner == owner).values(lease_until=until))


def release_owner(sessions: sessionmaker[Session], owner: str) -> None:
    with sessions.begin() as session:
        session.execute(delete(ImapClaim).where(ImapClaim.owner == owner))
        session.execute(update(Message).where(Message.lease_owner == owner).values(lease_owner=None, lease_until=None))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_dead_local(sessions: sessionmaker[Session], me: str) -> int:
    """Release at once the leases of dead `intake run` processes on this host (a kill -9, then a
    restart), rather than waiting for them to expire. Other hosts' leases simply expire."""
    host = me.split(":", 1)[0]
    with sessions() as session:
        owners = set(session.scalars(select(ImapClaim.owner).distinct()))
        owners |= set(session.scalars(select(Message.lease_owner).where(Message.lease_owner.is_not(None)).distinct()))
        owners |= set(session.scalars(select(ServiceHealth.owner).where(ServiceHealth.state != "stopped")))
    dead = []
    for owner in owners:
        parts = str(owner).split(":")
        if len(parts) != 3 or parts[0] != host or owner == me or not parts[1].isdigit():
            continue
        if not _pid_alive(int(parts[1])):
            dead.append(owner)
    if dead:
        with sessions.begin() as session:
            session.execute(delete(ImapClaim).where(ImapClaim.owner.in_(dead)))
            session.execute(update(Message).where(Message.lease_owner.in_(dead))
                            .values(lease_owner=None, lease_until=None))
            session.execute(update(ServiceHealth).where(ServiceHealth.owner.in_(dead))
                            .values(state="dead", status_line="died without stopping", updated_at=now_utc()))
    return len(dead)


# -- held records -----------------------------------------------------------------------------------
def held_records(sessions: sessionmaker[Session], limit: int = 200) -> list[int]:
    """Held records whose raw bytes are in the raw store, oldest change first, not leased by anyone."""
    now = now_utc()
    with sessions() as session:
        return [int(i) for i in session.scalars(
            select(Message.id).where(
                Message.status == HELD, Message.sha256.is_not(None),
                or_(Message.lease_until.is_(None), Message.lease_until < now),
            ).order_by(Message.updated_at, Message.id).limit(limit)
        )]


def claim_held(sessions: sessionmaker[Session], record_id: int, owner: str, lease_seconds: float) -> bool:
    now = now_utc()
    with sessions.begin() as session:
        res = session.execute(
            update(Message)
            .where(Message.id == record_id, Message.status == HELD,
                   or_(Message.lease_until.is_(None), Message.lease_until < now, Message.lease_owner == owner))
            .values(lease_owner=owner, lease_until=now + dt.timedelta(seconds=lease_seconds))
        )
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]


def unclaim_held(sessions: sessionmaker[Session], record_id: int, owner: str) -> None:
    with sessions.begin() as session:
        session.execute(update(Message).where(Message.id == record_id, Message.lease_owner == owner)
                        .values(lease_owner=None, lease_until=None))
