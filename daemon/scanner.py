"""ClamAV through clamd (an edge: all scanner I/O is here, and no policy).

We use the `clamd` package, the design's choice, for the connection, PING and VERSION, and called
from a worker thread by the async sources. Its INSTREAM sends 1 KiB chunks with socket.send(),
which may write short and then desynchronise the stream; ours sends 256 KiB chunks with sendall().
Any trouble (unreachable, timeout, reset, an ERROR reply, an unparsable reply) raises
ScanUnavailable: the caller holds the message. It is never taken as clean (fail closed, R5).
What a finding means (virus, macro, encryption, limits) is decided in daemon/stages/scan_policy.py.

Several clamd (`[scan] clamd` as a list, or INTAKE_CLAMD with several URLs): a Scanner is then a pool used
round-robin. A clamd that fails is marked down for a back-off (5 s doubling to 60 s) and the scan goes on
to the next one, so one clamd down means the others take the load. A clamd in back-off is tried again when
its back-off ends (by the next scan or PING), and also as a last resort when no other answered: the pool
raises ScanUnavailable only when every clamd failed this very scan (fail closed, as with one clamd).

One message's scans stay on one clamd (`Scanner.for_message()`): the whole-message scan unpacks every
attachment and clamd caches each clean file by its hash, so the per-attachment scans of R5 cost about 1 % more
on the clamd that saw the message and about 70 % more on another one (`python -m bench.double_scan`,
BENCHMARKS.md). The turn moves on once per message; a clamd that fails mid-message hands over to the pool.
"""

from __future__ import annotations

import io
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlparse

import clamd

from daemon.logs import get_logger

CHUNK = 256 * 1024
BACKOFF_S = 5.0
MAX_BACKOFF_S = 60.0
_REPLY = re.compile(r"^(?P<path>[^:]*): (?P<body>.*?) ?(?P<status>FOUND|OK|ERROR)$")


# Several URLs in one string (INTAKE_CLAMD, or the config string) are separated by commas or white space; a
# separator counts only before the next scheme (any `name://`), so one URL (even a socket path with a space)
# stays as it was.
_SPLIT = re.compile(r"[\s,]+(?=[A-Za-z][A-Za-z0-9+.-]*://)")
log = get_logger("scanner")


def split_urls(value: str | Sequence[str]) -> tuple[str, ...]:
    """'unix:///a.ctl, tcp://h:3310' or ['unix:///a.ctl', 'tcp://h:3310'] → each URL (not checked)."""
    if isinstance(value, str):
        parts = _SPLIT.split(value)
        if len(parts) == 1:
            return (value,)
        return tuple(p.strip(" \t\r\n,") for p in parts if p.strip(" \t\r\n,"))
    return tuple(value)


def url_problem(url: str) -> str | None:
    """Why `url` is not a clamd address we can use (one line), or None when it is."""
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        return None if parsed.path else f"{url!r} has no socket path (unix:///path)"
    if parsed.scheme == "tcp":
        try:
            parsed.port  # noqa: B018 — raises ValueError on a port that is not 0..65535
        except ValueError:
            return f"{url!r} has a bad port (tcp://host:port)"
        return None
    return f"{url!r} must be unix:///path or tcp://host:port"


class ScanUnavailable(RuntimeError):
    """clamd could not give a verdict; str() is a short code-like reason without message data."""


@dataclass(frozen=True)
class ScanResult:
    infected: bool
    signature: str | None = None


class _InstreamMixin:
    # _init_socket, _close_socket and clamd_socket come from the clamd classes mixed in below.
    clamd_socket: socket.socket

    def scan_bytes(self, data: bytes) -> str:
        self._init_socket()  # type: ignore[attr-defined]
        try:
            self.clamd_socket.sendall(b"zINSTREAM\0")
            view = memoryview(data)
            for start in range(0, len(view), CHUNK):
                chunk = view[start : start + CHUNK]
                self.clamd_socket.sendall(struct.pack("!L", len(chunk)))
                self.clamd_socket.sendall(chunk)
            self.clamd_socket.sendall(struct.pack("!L", 0))
            buf = io.BytesIO()
            while True:
                got = self.clamd_socket.recv(4096)
                if not got:
                    break
                buf.write(got)
                if b"\0" in got:
                    break
            return buf.getvalue().split(b"\0", 1)[0].decode("utf-8", "replace").strip()
        finally:
            self._close_socket()  # type: ignore[attr-defined]


class _Unix(_InstreamMixin, clamd.ClamdUnixSocket):
    pass


class _Tcp(_InstreamMixin, clamd.ClamdNetworkSocket):
    pass


@dataclass
class _Clamd:
    """One clamd of the pool and what the pool knows of it (changed under the pool's lock)."""

    index: int
    url: str
    make: Callable[[], _InstreamMixin]
    down_until: float = 0.0  # monotonic; 0 = up
    backoff: float = 0.0  # the last back-off given, doubled on each failure in a row
    last_error: str | None = None
    scans: int = 0  # verdicts given (OK or FOUND)
    failures: int = 0

    @property
    def label(self) -> str:
        return f"clamd[{self.index}] {self.url}"


@dataclass(frozen=True)
class ClamdState:
    """One clamd as `intake check`, the dashboard and the tests see it."""

    index: int
    url: str
    up: bool
    version: str | None = None  # filled by probe()
    error: str | None = None  # the last failure's code, one line
    scans: int = 0
    failures: int = 0
    retry_in_s: float = field(default=0.0)


def _connector(url: str, timeout: float) -> Callable[[], _InstreamMixin]:
    problem = url_problem(url)
    if problem:
        raise ValueError(f"clamd address {problem}")
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        return lambda: _Unix(path=parsed.path, timeout=timeout)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 3310
    return lambda: _Tcp(host=host, port=port, timeout=timeout)


class Scanner:
    """One clamd (`Scanner("unix:///run/clamav/clamd.ctl", 60)`) or a pool of several (a list, or one string
    with several URLs). Thread-safe: the pipeline scans from worker threads; I/O happens outside the lock."""

    def __init__(self, url: str | Sequence[str], timeout: float = 60.0, *, backoff: float = BACKOFF_S,
                 max_backoff: float = MAX_BACKOFF_S) -> None:
        urls = split_urls(url)
        if not urls:
            raise ValueError("clamd address: no URL given")
        self.urls = urls
        self.url = url if isinstance(url, str) else ", ".join(urls)
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._pool = [_Clamd(i, u, _connector(u, timeout)) for i, u in enumerate(urls)]
        self._lock = threading.Lock()
        self._next = 0

    # -- choosing and marking (under the lock) --------------------------------------------------------

    def _order(self, *, advance: bool = False, prefer: int | None = None) -> list[_Clamd]:
        """This call's order: the clamd that are up, round-robin from the next one (or from `prefer`, the
        clamd of this message, without moving the turn on); then those in back-off, soonest back first (tried
        only if none of the first answered). Only a message's first scan moves the turn on."""
        now = time.monotonic()
        with self._lock:
            start = self._next if prefer is None else prefer
            if advance and prefer is None:
                self._next = (self._next + 1) % len(self._pool)
            turn = self._pool[start:] + self._pool[:start]
            up = [c for c in turn if c.down_until <= now]
            down = sorted((c for c in turn if c.down_until > now), key=lambda c: c.down_until)
        return up + down

    def _ok(self, c: _Clamd, *, scanned: bool, quiet: bool = False) -> None:
        with self._lock:
            was_down = c.backoff > 0
            c.down_until, c.backoff, c.last_error = 0.0, 0.0, None
            if scanned:
                c.scans += 1
        if was_down and not quiet and len(self._pool) > 1:
            log.info("clamd_up", detail=c.label)

    def _failed(self, c: _Clamd, code: str, *, quiet: bool = False) -> None:
        with self._lock:
            was_up = c.backoff == 0
            c.backoff = min(self.max_backoff, c.backoff * 2 if c.backoff else self.backoff)
            c.down_until = time.monotonic() + c.backoff
            c.last_error = code
            c.failures += 1
            backoff = c.backoff
        # Logged when it goes down (not at each retry of an outage); with one clamd the caller's hold says it
        # all, as before the pool.
        if was_up and not quiet and len(self._pool) > 1:
            log.warning("clamd_down", detail=c.label, error=code, backoff_s=backoff)

    # -- I/O -----------------------------------------------------------------------------------------

    @staticmethod
    def _scan_one(c: _Clamd, data: bytes) -> ScanResult:
        try:
            reply = c.make().scan_bytes(data)
        except (OSError, clamd.ClamdError) as exc:
            raise ScanUnavailable(f"clamd_unreachable:{exc.__class__.__name__}") from None
        m = _REPLY.match(reply)
        if not m:
            raise ScanUnavailable("clamd_bad_reply" if reply else "clamd_no_reply")
        if m["status"] == "OK":
            return ScanResult(False)
        if m["status"] == "FOUND":
            return ScanResult(True, m["body"].strip())
        raise ScanUnavailable("clamd_error_reply")

    def scan(self, data: bytes) -> ScanResult:
        """A verdict from the first clamd that gives one; ScanUnavailable (the last failure's code) when none
        does. Never clean by default (fail closed)."""
        return self._scan(data, None)[0]

    def _scan(self, data: bytes, prefer: int | None) -> tuple[ScanResult, int]:
        last: ScanUnavailable | None = None
        for c in self._order(advance=True, prefer=prefer):
            try:
                result = self._scan_one(c, data)
            except ScanUnavailable as exc:
                self._failed(c, str(exc))
                last = exc
                continue
            self._ok(c, scanned=True)
            return result, c.index
        assert last is not None
        raise last

    def for_message(self) -> MessageScanner:
        """A scanner for one message's scans: the first goes to the pool's next clamd, the rest to the same."""
        return MessageScanner(self)

    def _ping_one(self, c: _Clamd, *, quiet: bool = False) -> bool:
        try:
            answered = c.make().ping() == "PONG"
            code = "clamd_bad_reply"
        except (OSError, clamd.ClamdError) as exc:
            answered, code = False, f"clamd_unreachable:{exc.__class__.__name__}"
        if answered:
            self._ok(c, scanned=False, quiet=quiet)
        else:
            self._failed(c, code, quiet=quiet)
        return answered

    def ping(self) -> bool:
        """True when at least one clamd answers PONG. Each clamd that is up, or whose back-off has ended, is
        asked (so PING brings a restarted one back); those still in back-off only when none of them answered."""
        order = self._order()
        now = time.monotonic()
        due = [c for c in order if c.down_until <= now]
        results = [self._ping_one(c) for c in due]
        if any(results):
            return True
        return any(self._ping_one(c) for c in order if c not in due)

    def _version_one(self, c: _Clamd) -> str | None:
        try:
            return str(c.make().version())
        except (OSError, clamd.ClamdError):
            return None

    def version(self) -> str | None:
        """'ClamAV 1.4.6/27000/Tue Nov 24 …' — the part after the last slash is the signatures' date. From the
        first clamd that answers."""
        for c in self._order():
            found = self._version_one(c)
            if found is not None:
                return found
        return None

    def states(self) -> list[ClamdState]:
        """What the pool knows of each clamd now (no I/O)."""
        now = time.monotonic()
        with self._lock:
            return [ClamdState(c.index, c.url, c.down_until <= now, None, c.last_error, c.scans, c.failures,
                               max(0.0, round(c.down_until - now, 1))) for c in self._pool]

    def probe(self) -> list[ClamdState]:
        """Ask every clamd now (PING, then VERSION), back-off or not: for `intake check`, `intake status` and
        the dashboard. A clamd that answers gets its version; one that does not, its one-line error code."""
        for c in self._pool:
            self._ping_one(c, quiet=True)  # a look, not an event of the service
        versions = {c.index: self._version_one(c) for c in self._pool if c.last_error is None}
        return [ClamdState(s.index, s.url, s.up, versions.get(s.index), s.error, s.scans, s.failures, s.retry_in_s)
                for s in self.states()]


class MessageScanner:
    """One message's scans on the clamd that answered its first scan (see the module's docstring); the pool's
    order, back-offs and fail-closed rule apply unchanged. Used by one thread for one message."""

    def __init__(self, pool: Scanner) -> None:
        self.pool = pool
        self.clamd: int | None = None  # the index of the clamd that answered last

    def scan(self, data: bytes) -> ScanResult:
        result, self.clamd = self.pool._scan(data, self.clamd)
        return result


class Scans(Protocol):
    def scan(self, data: bytes) -> ScanResult: ...


def for_one_message(scanner: Scans) -> Scans:
    """The scanner for one message's scans: a pool's `for_message()`; anything else (one stand-in) as it is."""
    return scanner.for_message() if isinstance(scanner, Scanner) else scanner
