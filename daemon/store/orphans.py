"""Raw files with no record: what a delivery that was never recorded left behind (a 451, a kill -9 between the
raw store's fsync and the commit). They hold personal data that retention would never purge (it walks records),
and the MTA or the mailbox still has the message, so they are removed.

A file is an orphan when no record names its SHA-256 and it is older than a grace period: a file written a
moment ago may belong to a record about to commit. `RawStore.put` refreshes the file's time when it re-uses
one, and remembers what this process wrote, so neither is taken while its record may still commit.
The daemon sweeps at start and every `[service] orphan_sweep_interval`; `intake check` lists them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from daemon.store.db import Message
from daemon.store.raw import RawStore

BATCH = 500


@dataclass(frozen=True)
class Orphan:
    sha256: str
    path: Path
    age_seconds: float


def find_orphans(sessions: Any, store: RawStore, grace: float, now: float | None = None) -> list[Orphan]:
    """Files of the raw store older than `grace` seconds whose SHA-256 no record names."""
    now = time.time() if now is None else now
    candidates: list[Orphan] = []
    for sha, path in store.files():
        try:
            age = now - path.stat().st_mtime
        except FileNotFoundError:
            continue
        if age >= grace and not store.written_within(sha, grace):
            candidates.append(Orphan(sha, path, age))
    orphans: list[Orphan] = []
    with sessions() as session:
        for start in range(0, len(candidates), BATCH):
            batch = candidates[start:start + BATCH]
            known = set(session.scalars(select(Message.sha256).where(Message.sha256.in_({o.sha256 for o in batch}))))
            orphans.extend(o for o in batch if o.sha256 not in known)
    return orphans


def remove_orphans(sessions: Any, store: RawStore, grace: float) -> int:
    """Remove the orphans; return how many. Each is checked against the database once more right before."""
    removed = 0
    for orphan in find_orphans(sessions, store, grace):
        with sessions() as session:
            if session.scalar(select(Message.id).where(Message.sha256 == orphan.sha256).limit(1)) is not None:
                continue  # recorded meanwhile
        if store.written_within(orphan.sha256, grace):
            continue
        store.remove(orphan.path)
        removed += 1
    return removed
