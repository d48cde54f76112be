"""The floor: fetch every message with stdlib imaplib (UID FETCH BODY.PEEK[]) and scan it with clamd
over INSTREAM. Nothing else: no parsing, no database.

Sequential (workers=1): one message after the other on one IMAP connection. Parallel (workers=N): N threads, each
with its own IMAP connection and clamd connections, so that the floor can use as many cores as the intake does (its
8 pipeline workers); the GIL is no limit, the threads wait on sockets. Each thread takes the next UID from a shared
queue when it is free, as the intake's workers do: a split fixed in advance would leave one connection with more
of the 5–19 MB messages, and the floor's wall time would be that connection's, kinder to the intake than it is."""

from __future__ import annotations

import imaplib
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from daemon.scanner import Scanner

_LITERAL_UID = re.compile(rb"UID (\d+)")


@dataclass
class BaselineResult:
    messages: int = 0
    bytes: int = 0
    wall_s: float = 0.0
    fetch_s: float = 0.0  # summed over workers
    scan_s: float = 0.0
    infected: int = 0
    per_uid: dict[int, tuple[float, float]] = field(default_factory=dict)  # uid -> (fetch_s, scan_s)
    workers: int = 1  # IMAP connections that fetched (the parallel floor's N, 1 when sequential)
    # One entry per connection: messages it fetched and when it started and ended (seconds after the run's start),
    # so that a report (and the tests) can see that N connections really worked at the same time.
    per_worker: list[dict[str, float]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.messages / self.wall_s if self.wall_s else 0.0


def _uids(imap: imaplib.IMAP4) -> list[int]:
    typ, data = imap.uid("SEARCH", "ALL")
    if typ != "OK":
        raise RuntimeError("UID SEARCH failed")
    return [int(x) for x in (data[0] or b"").split()]


def _fetch(imap: imaplib.IMAP4, uid: int) -> bytes:
    typ, got = imap.uid("FETCH", str(uid), "(BODY.PEEK[])")
    if typ != "OK":
        raise RuntimeError(f"FETCH {uid} failed")
    for item in got:
        if isinstance(item, tuple):
            return bytes(item[1])
    raise RuntimeError(f"FETCH {uid}: no literal")


def _worker(host: str, port: int, user: str, password: str, mailbox: str, uids: queue.SimpleQueue[int],
            clamd_url: str, result: BaselineResult, origin: float, barrier: threading.Barrier | None = None) -> None:
    scanner = Scanner(clamd_url, timeout=120)
    started = time.perf_counter()
    imap = imaplib.IMAP4(host, port, timeout=120)
    try:
        try:
            imap.login(user, password)
            imap.select(mailbox, readonly=True)
        except BaseException:
            if barrier is not None:
                barrier.abort()  # the others stop waiting (BrokenBarrierError) instead of hanging
            raise
        if barrier is not None:
            barrier.wait(120)  # every connection is up before the first fetch: N at once from the start
        while True:
            try:
                uid = uids.get_nowait()
            except queue.Empty:
                break
            t0 = time.perf_counter()
            raw = _fetch(imap, uid)
            t1 = time.perf_counter()
            verdict = scanner.scan(raw)
            t2 = time.perf_counter()
            result.fetch_s += t1 - t0
            result.scan_s += t2 - t1
            result.bytes += len(raw)
            result.messages += 1
            result.infected += int(verdict.infected)
            result.per_uid[uid] = (t1 - t0, t2 - t1)
    finally:
        try:
            imap.logout()
        except (OSError, imaplib.IMAP4.error):
            pass
    result.per_worker.append({"messages": float(result.messages), "start_s": started - origin,
                              "end_s": time.perf_counter() - origin})


def run(host: str, port: int, user: str, password: str, clamd_url: str, mailbox: str = "INBOX",
        workers: int = 1) -> BaselineResult:
    """Fetch and scan every message of the mailbox; `workers` connections in parallel (1 = sequential; never more
    connections than messages)."""
    imap = imaplib.IMAP4(host, port, timeout=120)
    imap.login(user, password)
    imap.select(mailbox, readonly=True)
    uids = _uids(imap)
    imap.logout()
    workers = max(1, min(workers, len(uids)))
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for uid in uids:
        todo.put(uid)
    result = BaselineResult(workers=workers)
    started = time.perf_counter()
    if workers == 1:
        _worker(host, port, user, password, mailbox, todo, clamd_url, result, started)
    else:
        parts = [BaselineResult() for _ in range(workers)]
        barrier = threading.Barrier(workers)
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(_worker, host, port, user, password, mailbox, todo, clamd_url, parts[k], started,
                                   barrier) for k in range(workers)]
            for f in futures:
                f.result()
        for part in parts:
            result.messages += part.messages
            result.bytes += part.bytes
            result.fetch_s += part.fetch_s
            result.scan_s += part.scan_s
            result.infected += part.infected
            result.per_uid.update(part.per_uid)
            result.per_worker += part.per_worker
    result.wall_s = time.perf_counter() - started
    return result
