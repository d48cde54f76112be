"""The floor: fetch every message with stdlib imaplib (UID FETCH BODY.PEEK[]) and scan it with clamd
over INSTREAM, one message after the other on one connection. Nothing else: no parsing, no database."""

from __future__ import annotations

import imaplib
import re
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


def _worker(host: str, port: int, user: str, password: str, mailbox: str, uids: list[int], clamd_url: str,
            result: BaselineResult) -> None:
    scanner = Scanner(clamd_url, timeout=120)
    imap = imaplib.IMAP4(host, port, timeout=120)
    try:
        imap.login(user, password)
        imap.select(mailbox, readonly=True)
        for uid in uids:
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


def run(host: str, port: int, user: str, password: str, clamd_url: str, mailbox: str = "INBOX",
        workers: int = 1) -> BaselineResult:
    """Fetch and scan every message of the mailbox; `workers` connections in parallel (1 = sequential)."""
    imap = imaplib.IMAP4(host, port, timeout=120)
    imap.login(user, password)
    imap.select(mailbox, readonly=True)
    uids = _uids(imap)
    imap.logout()
    result = BaselineResult()
    started = time.perf_counter()
    if workers <= 1:
        _worker(host, port, user, password, mailbox, uids, clamd_url, result)
    else:
        parts = [BaselineResult() for _ in range(workers)]
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(_worker, host, port, user, password, mailbox, uids[k::workers], clamd_url, parts[k])
                       for k in range(workers)]
            for f in futures:
                f.result()
        for part in parts:
            result.messages += part.messages
            result.bytes += part.bytes
            result.fetch_s += part.fetch_s
            result.scan_s += part.scan_s
            result.infected += part.infected
            result.per_uid.update(part.per_uid)
    result.wall_s = time.perf_counter() - started
    return result
