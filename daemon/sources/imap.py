"""The IMAP source: watch one mailbox, decide before downloading, save, then move.

One message's way (the `ImapWatcher.sync_pass` loop):

1. `UID SEARCH ALL`; the UIDs that already have a record are not fetched again (a `held` one stays
   in the inbox untouched; a settled one that is still there is moved now).
2. The rest are claimed in the database (daemon/store/claims.py), in batches small enough for
   aioimaplib, and `UID FETCH (UID RFC822.SIZE INTERNALDATE)` decides: over the size limit, only
   `BODY.PEEK[HEADER]` is fetched and the record is rejected/too_large with the declared size;
   otherwise `BODY.PEEK[]` (never `RFC822`, which sets \\Seen).
3. `Intake.process` (in a worker thread) returns once the record is durable; only then is the
   message moved (`UID MOVE`, or COPY + \\Deleted + UID EXPUNGE) to the folder for its status.

Every IMAP command has a timeout and is abandoned when the connection drops; any error closes the
connection and the watcher reconnects with capped exponential backoff and jitter. aioimaplib 2.0.3
parses a response recursively, line by line, and dies with a RecursionError (then hangs) at about
1,000 lines (iroco-co/aioimaplib#118): `_Protocol` below parses iteratively, UID sets stay small, and
QRESYNC is enabled where offered so that other daemons' moves arrive as one VANISHED line.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import ipaddress
import os
import random
import re
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aioimaplib
from aioimaplib.aioimaplib import CRLF, IncompleteRead, literal_data_re, quoted
from sqlalchemy.exc import SQLAlchemyError

from daemon.config import Config, ConfigError
from daemon.logs import get_logger
from daemon.model import ACCEPTED, DUPLICATE, HELD, QUARANTINED, REJECTED, Arrival
from daemon.store import claims
from daemon.store.claims import ImapKey

log = get_logger("imap")
T = TypeVar("T")

DEFAULT_FOLDERS = {
    ACCEPTED: "Intake/Accepted",
    REJECTED: "Intake/Rejected",
    QUARANTINED: "Intake/Quarantine",
    DUPLICATE: "Intake/Duplicate",
}
TWENTY_NINE_MINUTES = 29 * 60
FETCH_GROUP = 16  # small messages per UID FETCH BODY.PEEK[] (one round trip)
FETCH_GROUP_BYTES = 2 * 1024 * 1024


# -- configuration ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImapConfig:
    host: str
    user: str
    password: str = field(repr=False)
    port: int = 993
    security: str = "tls"  # tls (implicit TLS, certificates verified) | plain (loopback only)
    cafile: str | None = None
    mailbox: str = "INBOX"
    account: str = ""
    folders: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FOLDERS))
    poll_interval: float = 300.0  # without IDLE
    idle_interval: float = TWENTY_NINE_MINUTES  # IDLE is re-issued at least this often
    command_timeout: float = 60.0
    connect_timeout: float = 30.0
    batch_size: int = 100  # UIDs per FETCH / MOVE (aioimaplib's ~1,000-line limit)
    max_in_flight: int = 8
    # Two messages near the 20 MiB limit (and the small ones beside them): with their decoded parts and one
    # parse, about 250 MB at the peak (BENCHMARKS.md); 64 MiB let three in and peaked over 300 MB.
    max_in_flight_bytes: int = 48 * 1024 * 1024
    lease_seconds: float = 300.0
    noop_interval: float = 60.0
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    startup_attempts: int = 5
    use_idle: bool = True
    use_move: bool = True
    use_qresync: bool = True

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_password(section: dict[str, Any], env: dict[str, str]) -> str:
    """The password comes from $INTAKE_IMAP_PASSWORD, a file (imap.password_file), or a systemd
    credential ($CREDENTIALS_DIRECTORY/<imap.password_credential>, default 'imap-password');
    never from the config file itself."""
    if "password" in section:
        raise ConfigError("imap.password: not allowed in the config file; use imap.password_file, "
                          "$INTAKE_IMAP_PASSWORD or a systemd credential (imap.password_credential)")
    if env.get("INTAKE_IMAP_PASSWORD"):
        return env["INTAKE_IMAP_PASSWORD"]
    path = env.get("INTAKE_IMAP_PASSWORD_FILE") or section.get("password_file")
    if path:
        try:
            return Path(str(path)).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"imap.password_file: cannot be read ({exc.__class__.__name__})") from None
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    name = str(section.get("password_credential", "imap-password"))
    if cred_dir and (Path(cred_dir) / name).is_file():
        return (Path(cred_dir) / name).read_text(encoding="utf-8").rstrip("\r\n")
    raise ConfigError("imap: no password: set imap.password_file, $INTAKE_IMAP_PASSWORD or a systemd credential "
                      f"named {name!r} (LoadCredential=)")


def load_imap_config(config: Config, env: dict[str, str] | None = None) -> ImapConfig | None:
    """The [imap] section of the config file (None when there is none or `enabled = false`)."""
    env = dict(os.environ if env is None else env)
    section = config.raw.get("imap")
    if section is None and not env.get("INTAKE_IMAP_HOST"):
        return None
    if section is not None and not isinstance(section, dict):
        raise ConfigError("[imap]: must be a table")
    section = dict(section or {})
    if section.get("enabled", True) is False:
        return None

    def get(key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        if key not in section:
            return default
        value = section[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind not in (bool, (bool,))):
            raise ConfigError(f"imap.{key}: wrong type {type(value).__name__}")
        return value

    def positive(key: str, default: float) -> float:
        value = float(get(key, (int, float), default))
        if value <= 0:
            raise ConfigError(f"imap.{key}: must be positive")
        return value

    host = env.get("INTAKE_IMAP_HOST") or get("host", str, "")
    if not host:
        raise ConfigError("imap.host: missing")
    user = env.get("INTAKE_IMAP_USER") or get("user", str, "")
    if not user:
        raise ConfigError("imap.user: missing")
    security = get("security", str, "tls")
    if security not in ("tls", "plain"):
        raise ConfigError("imap.security: must be 'tls' (implicit TLS) or 'plain'")
    if security == "plain" and not _loopback(host):
        raise ConfigError("imap.security: 'plain' is only allowed to a loopback host; use 'tls'")
    port = int(env.get("INTAKE_IMAP_PORT") or get("port", int, 993 if security == "tls" else 143))
    folders = dict(DEFAULT_FOLDERS)
    extra = get("folders", dict, {})
    for status, name in extra.items():
        if status not in DEFAULT_FOLDERS or not isinstance(name, str) or not name:
            raise ConfigError(f"imap.folders.{status}: statuses are {', '.join(DEFAULT_FOLDERS)}; values folder names")
        folders[status] = name
    mailbox = get("mailbox", str, "INBOX")
    for name in [mailbox, *folders.values()]:
        if not name.isascii() or any(c in name for c in '"\\\r\n'):
            raise ConfigError(f"imap: folder name {name!r}: use plain ASCII names")
    if mailbox in folders.values():
        raise ConfigError(f"imap.folders: {mailbox!r} is the watched mailbox; choose other folders")
    idle_interval = positive("idle_interval", TWENTY_NINE_MINUTES)
    if idle_interval > TWENTY_NINE_MINUTES:
        raise ConfigError("imap.idle_interval: at most 1740 seconds (servers drop IDLE clients after 30 minutes)")
    batch = int(get("batch_size", int, 100))
    if not 1 <= batch <= 500:
        raise ConfigError("imap.batch_size: between 1 and 500 (aioimaplib fails on responses of ~1,000 lines)")
    cafile = get("cafile", str, None)
    return ImapConfig(
        host=host, user=user, password=read_password(section, env), port=port, security=security, cafile=cafile,
        mailbox=mailbox, account=get("account", str, "") or f"{user}@{host}", folders=folders,
        poll_interval=positive("poll_interval", 300.0), idle_interval=idle_interval,
        command_timeout=positive("command_timeout", 60.0), connect_timeout=positive("connect_timeout", 30.0),
        batch_size=batch, max_in_flight=max(1, int(get("max_in_flight", int, 8))),
        max_in_flight_bytes=max(1, int(get("max_in_flight_bytes", int, ImapConfig.max_in_flight_bytes))),
        lease_seconds=positive("lease_seconds", 300.0), noop_interval=positive("noop_interval", 60.0),
        backoff_initial=positive("backoff_initial", 1.0), backoff_max=positive("backoff_max", 300.0),
        startup_attempts=max(1, int(get("startup_attempts", int, 5))),
        use_idle=bool(get("idle", bool, True)), use_move=bool(get("move", bool, True)),
        use_qresync=bool(get("qresync", bool, True)),
    )


# -- aioimaplib, made safe --------------------------------------------------------------------------
class _Protocol(aioimaplib.IMAP4ClientProtocol):
    """aioimaplib's protocol with an iterative response parser (no RecursionError on long
    responses), a count of the bytes read, the commands sent (no LOGIN), and new-mail detection."""

    EXISTS = re.compile(rb"^\* \d+ EXISTS")

    def __init__(self, loop: asyncio.AbstractEventLoop, conn_lost_cb: Callable[[Exception | None], None]) -> None:
        super().__init__(loop, conn_lost_cb)
        self.bytes_received = 0
        self.sent: deque[str] = deque(maxlen=2000)
        self.new_mail = False

    def data_received(self, d: bytes) -> None:
        self.bytes_received += len(d)
        super().data_received(d)

    def send(self, line: str, scrub: str | None = None) -> None:
        if " LOGIN " not in line:
            self.sent.append(line)
        super().send(line, scrub)

    def _handle_line(self, line: bytes, current_cmd: Any) -> Any:
        if self.EXISTS.match(line):
            self.new_mail = True
        return super()._handle_line(line, current_cmd)

    def _handle_responses(self, data: bytes, line_handler: Callable[[bytes, Any], Any],
                          current_cmd: Any = None) -> None:
        # The same steps as aioimaplib's, in a loop instead of one recursive call per line.
        while True:
            if not data:
                if self.pending_sync_command is not None:
                    self.pending_sync_command.flush()
                if current_cmd is not None and current_cmd.wait_data():
                    raise IncompleteRead(current_cmd)
                return
            if current_cmd is not None and current_cmd.wait_literal_data():
                data = current_cmd.append_literal_data(data)
                if current_cmd.wait_literal_data():
                    raise IncompleteRead(current_cmd)
            line, separator, tail = data.partition(CRLF)
            if not separator:
                raise IncompleteRead(current_cmd, data)
            cmd = line_handler(line, current_cmd)
            begin_literal = literal_data_re.match(line)
            if begin_literal:
                if cmd is None:
                    cmd = aioimaplib.Command("NIL", "unused")
                cmd.begin_literal_data(int(begin_literal.group("size")))
                data, current_cmd = tail, cmd
            elif cmd is not None and cmd.wait_data():
                data, current_cmd = tail, cmd
            else:
                data, current_cmd = tail, None


class _Client(aioimaplib.IMAP4):
    def create_client(self, host: str, port: int, loop: asyncio.AbstractEventLoop | None,
                      conn_lost_cb: Callable[[Exception | None], None] | None = None,
                      ssl_context: ssl.SSLContext | None = None) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = _Protocol(local_loop, conn_lost_cb or (lambda _exc: None))
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context))


class ImapError(Exception):
    """Trouble with the IMAP server or connection; str() is short and carries no message data."""


class FatalImapError(ImapError):
    """Not worth retrying at start: wrong password, untrusted certificate."""


@dataclass
class Meta:
    uid: int
    size: int
    internaldate: dt.datetime | None


_MONTHS = {m: i + 1 for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())}
_INTERNALDATE = re.compile(r'(\d{1,2})-(\w{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)')


def parse_internaldate(text: str) -> dt.datetime | None:
    m = _INTERNALDATE.search(text)
    if not m or m[2] not in _MONTHS:
        return None
    offset = dt.timedelta(hours=int(m[8]), minutes=int(m[9])) * (1 if m[7] == "+" else -1)
    return dt.datetime(int(m[3]), _MONTHS[m[2]], int(m[1]), int(m[4]), int(m[5]), int(m[6]),
                       tzinfo=dt.timezone(offset))


def uid_set(uids: Iterable[int]) -> str:
    """1,2,3,7,9,10 → '1:3,7,9:10'."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}:{ordered[j]}")
        i = j + 1
    return ",".join(parts)


class ImapSession:
    """One authenticated connection with the mailbox selected. Every command has a timeout and fails
    at once when the connection is lost; after any ImapError the session is discarded."""

    def __init__(self, cfg: ImapConfig) -> None:
        self.cfg = cfg
        self.client: _Client | None = None
        self.lost: asyncio.Future[None] | None = None
        self.uidvalidity = 0
        self.delimiter: str | None = "."
        self.capabilities: set[str] = set()
        self._folder_names: dict[str, str] = {}

    @property
    def protocol(self) -> _Protocol:
        assert self.client is not None
        return self.client.protocol  # type: ignore[return-value]

    def _on_lost(self, _exc: Exception | None) -> None:
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)

    async def _cmd(self, coro: Awaitable[T], timeout: float | None = None, what: str = "command") -> T:
        assert self.lost is not None
        task = asyncio.ensure_future(coro)
        lost = self.lost
        try:
            done, _ = await asyncio.wait({task, lost}, timeout=timeout or self.cfg.command_timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done:
            try:
                return task.result()
            except (TimeoutError, aioimaplib.CommandTimeout):
                raise ImapError(f"{what}_timeout") from None
            except aioimaplib.AioImapException as exc:
                raise ImapError(f"{what}_failed:{exc.__class__.__name__}") from None
            except (OSError, EOFError) as exc:
                raise ImapError(f"{what}_failed:{exc.__class__.__name__}") from None
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        if lost.done():
            raise ImapError(f"connection_lost_during_{what}")
        raise ImapError(f"{what}_timeout")

    def _check(self, response: Any, what: str) -> Any:
        if response.result != "OK":
            raise ImapError(f"{what}_refused:{response.result}")
        return response

    async def open(self) -> None:
        cfg = self.cfg
        context: ssl.SSLContext | None = None
        if cfg.security == "tls":
            context = ssl.create_default_context(cafile=cfg.cafile)  # verifies the chain and the host name
        loop = asyncio.get_running_loop()
        self.lost = loop.create_future()
        self.client = _Client(host=cfg.host, port=cfg.port, timeout=cfg.command_timeout,
                              conn_lost_cb=self._on_lost, ssl_context=context)
        try:
            await asyncio.wait_for(self.client.wait_hello_from_server(), cfg.connect_timeout)
        except ssl.SSLCertVerificationError as exc:
            raise FatalImapError(f"TLS certificate of {cfg.label} not trusted ({exc.verify_message})") from None
        except ssl.SSLError as exc:
            raise ImapError(f"TLS handshake with {cfg.label} failed ({exc.reason or exc.__class__.__name__})") from None
        except TimeoutError:
            raise ImapError(f"no answer from {cfg.label} within {cfg.connect_timeout:g} s") from None
        except OSError as exc:
            raise ImapError(f"cannot connect to {cfg.label} ({exc.strerror or exc.__class__.__name__})") from None
        except aioimaplib.AioImapException as exc:
            raise ImapError(f"{cfg.label} did not greet as an IMAP server ({exc.__class__.__name__})") from None
        if self.lost.done():
            raise ImapError(f"connection to {cfg.label} closed at once")
        response = await self._cmd(self.client.login(cfg.user, cfg.password), what="login")
        if response.result != "OK":
            raise FatalImapError(f"login to {cfg.label} refused (check imap.user and the password)")
        await self._cmd(self.protocol.capability(), what="capability")
        self.capabilities = {c.upper() for c in self.protocol.capabilities}
        if cfg.use_qresync and "QRESYNC" in self.capabilities and "ENABLE" in self.capabilities:
            await self._cmd(self.client.enable("QRESYNC"), what="enable")
        listing = self._check(await self._cmd(self.client.list('""', '""'), what="list"), "list")
        self.delimiter = _parse_delimiter(listing.lines)
        await self.select()

    async def select(self) -> None:
        assert self.client is not None
        response = self._check(await self._cmd(self.client.select(quoted(self.cfg.mailbox)), what="select"), "select")
        for line in response.lines:
            m = re.search(rb"\[UIDVALIDITY (\d+)\]", bytes(line))
            if m:
                self.uidvalidity = int(m[1])
        if not self.uidvalidity:
            raise ImapError("select_without_uidvalidity")

    def folder(self, status: str) -> str:
        """The configured folder name ('Intake/Accepted') with the server's hierarchy delimiter."""
        name = self.cfg.folders[status]
        return name.replace("/", self.delimiter) if self.delimiter else name

    async def ensure_folders(self) -> None:
        assert self.client is not None
        listing = self._check(await self._cmd(self.client.list('""', '"*"'), what="list"), "list")
        existing = set()
        for line in listing.lines:
            m = re.search(rb'\) (?:"[^"]*"|NIL) "?([^"]*)"?$', bytes(line))
            if m:
                existing.add(m[1].decode("ascii", "replace"))
        for status in self.cfg.folders:
            name = self.folder(status)
            if name in existing:
                continue
            response = await self._cmd(self.client.create(quoted(name)), what="create")
            if response.result != "OK" and b"ALREADYEXISTS" not in b" ".join(bytes(x) for x in response.lines):
                raise ImapError(f"create_refused:{status}")
            log.info("folder_created", folder=status)

    async def search_all(self) -> list[int]:
        assert self.client is not None
        response = self._check(await self._cmd(self.client.uid_search("ALL", charset=None), what="search"), "search")
        uids: list[int] = []
        for line in response.lines[:-1]:
            text = bytes(line).decode("ascii", "replace").strip()
            if text.upper().startswith("SEARCH"):
                text = text[6:]
            uids.extend(int(x) for x in text.split() if x.isdigit())
        return sorted(set(uids))

    async def fetch_meta(self, uids: list[int]) -> list[Meta]:
        assert self.client is not None
        if not uids:
            return []
        response = self._check(await self._cmd(
            self.client.uid("fetch", uid_set(uids), "(UID RFC822.SIZE INTERNALDATE)"), what="fetch_meta"), "fetch")
        wanted = set(uids)
        out: dict[int, Meta] = {}
        for line in response.lines:
            if not isinstance(line, bytes):
                continue
            uid = re.search(rb"\bUID (\d+)", line)
            size = re.search(rb"\bRFC822\.SIZE (\d+)", line)
            date = re.search(rb'\bINTERNALDATE "([^"]+)"', line)
            if uid and size and int(uid[1]) in wanted:
                out[int(uid[1])] = Meta(int(uid[1]), int(size[1]),
                                        parse_internaldate(date[1].decode("ascii")) if date else None)
        return [out[u] for u in sorted(out)]

    async def fetch_literal(self, uid: int, section: str, timeout: float) -> bytes | None:
        """One message's BODY.PEEK[<section>] (section '' = the whole message); None if it is gone."""
        assert self.client is not None
        response = self._check(await self._cmd(
            self.client.uid("fetch", str(uid), f"(UID BODY.PEEK[{section}])"), timeout=timeout,
            what="fetch_body"), "fetch")
        lines = response.lines
        marker = f"BODY[{section}]".encode()
        for i, line in enumerate(lines):
            if isinstance(line, bytes) and marker in line and re.search(rb"\bUID %d\b" % uid, line + b" " + (
                    lines[i + 2] if i + 2 < len(lines) and isinstance(lines[i + 2], bytes) else b"")):
                size = literal_data_re.match(line)
                if size and i + 1 < len(lines) and isinstance(lines[i + 1], bytearray):
                    data = bytes(lines[i + 1])
                    if len(data) != int(size.group("size")):
                        raise ImapError("fetch_body_short")
                    return data
        return None

    async def fetch_bodies(self, uids: list[int], timeout: float) -> dict[int, bytes]:
        """BODY.PEEK[] of several (small) messages in one command: uid → raw bytes; gone ones are absent."""
        assert self.client is not None
        if len(uids) == 1:
            one = await self.fetch_literal(uids[0], "", timeout)
            return {uids[0]: one} if one is not None else {}
        response = self._check(await self._cmd(
            self.client.uid("fetch", uid_set(uids), "(UID BODY.PEEK[])"), timeout=timeout, what="fetch_body"), "fetch")
        wanted, out = set(uids), {}
        lines = response.lines
        for i, line in enumerate(lines):
            if not isinstance(line, bytes) or b"BODY[] {" not in line:
                continue
            size = literal_data_re.match(line)
            if not size or i + 1 >= len(lines) or not isinstance(lines[i + 1], bytearray):
                continue
            after = lines[i + 2] if i + 2 < len(lines) and isinstance(lines[i + 2], bytes) else b""
            uid = re.search(rb"\bUID (\d+)", line) or re.search(rb"\bUID (\d+)", after)
            if uid and int(uid[1]) in wanted:
                data = bytes(lines[i + 1])
                if len(data) != int(size.group("size")):
                    raise ImapError("fetch_body_short")
                out[int(uid[1])] = data
        return out

    async def move(self, uids: list[int], status: str) -> None:
        assert self.client is not None
        if not uids:
            return
        target = quoted(self.folder(status))
        uidset = uid_set(uids)
        if self.cfg.use_move and "MOVE" in self.capabilities:
            self._check(await self._cmd(self.client.uid("move", uidset, target), what="move"), "move")
            return
        self._check(await self._cmd(self.client.uid("copy", uidset, target), what="copy"), "copy")
        self._check(await self._cmd(self.client.uid("store", uidset, "+FLAGS.SILENT", "(\\Deleted)"),
                                    what="store"), "store")
        if "UIDPLUS" in self.capabilities:
            self._check(await self._cmd(self.client.uid("expunge", uidset), what="expunge"), "expunge")
        else:
            self._check(await self._cmd(self.client.expunge(), what="expunge"), "expunge")

    async def noop(self) -> None:
        assert self.client is not None
        self._check(await self._cmd(self.client.noop(), what="noop"), "noop")

    async def idle(self, seconds: float, wake: asyncio.Event) -> str:
        """IDLE until new mail (EXISTS), `wake`, or `seconds`; returns why it ended."""
        assert self.client is not None and self.lost is not None
        client = self.client
        queue = client.protocol.idle_queue
        while not queue.empty():
            queue.get_nowait()
        idle = await self._cmd(client.idle_start(timeout=seconds + 60), what="idle")
        deadline = time.monotonic() + seconds
        reason = "timeout"
        waker = asyncio.ensure_future(wake.wait())
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                push = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait({push, waker, self.lost}, timeout=left,
                                             return_when=asyncio.FIRST_COMPLETED)
                if push not in done:
                    push.cancel()
                if self.lost in done:
                    raise ImapError("connection_lost_during_idle")
                if waker in done:
                    reason = "wake"
                    break
                if push in done:
                    lines = push.result()
                    if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
                        break
                    if any(b"EXISTS" in bytes(x) for x in lines):
                        reason = "push"
                        break
                    # "* OK Still here", flag changes, other daemons' expunges: keep idling
        finally:
            waker.cancel()
        if client.has_pending_idle():
            client.idle_done()
        self._check(await self._cmd(idle, what="idle_done"), "idle")
        return reason

    async def close(self) -> None:
        if self.client is None:
            return
        client, self.client = self.client, None
        try:
            if self.lost is not None and not self.lost.done():
                await asyncio.wait_for(client.logout(), 5)
        except BaseException:
            pass
        finally:
            transport = client.protocol.transport
            if transport is not None:
                transport.close()


def _parse_delimiter(lines: list[Any]) -> str | None:
    for line in lines:
        m = re.search(rb'\) (?:"((?:\\.|[^"])*)"|NIL)', bytes(line))
        if m:
            return m[1].decode().replace("\\\\", "\\") if m[1] is not None else None
    return "."


# -- the watcher ------------------------------------------------------------------------------------
@dataclass
class Progress:
    """What the service shows in STATUS= and `intake status`."""

    state: str = "starting"
    status_line: str = "starting"
    connected: bool = False
    ready: bool = False
    last_poll_at: dt.datetime | None = None
    backlog: int | None = None
    held_in_mailbox: int = 0
    in_flight: int = 0
    last_error: str | None = None
    last_error_at: dt.datetime | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def set(self, state: str, line: str) -> None:
        self.state, self.status_line = state, line
        self.changed.set()

    def error(self, text: str) -> None:
        self.last_error, self.last_error_at = text, dt.datetime.now(dt.UTC)
        self.changed.set()


class ImapWatcher:
    """Watches one mailbox until `stop` is set. Runs the sync pipeline in worker threads."""

    def __init__(self, cfg: ImapConfig, intake: Any, owner: str, stop: asyncio.Event,
                 run_in_thread: Callable[..., Awaitable[Any]], progress: Progress | None = None,
                 once: bool = False) -> None:
        self.cfg = cfg
        self.intake = intake
        self.owner = owner
        self.stop = stop
        self.kick = asyncio.Event()  # set by the retry loop when a held IMAP record settled
        self.thread = run_in_thread
        self.progress = progress or Progress()
        self.once = once
        self.session: ImapSession | None = None
        self.bytes_received = 0  # over all connections (tests: nothing big was downloaded)
        self.sent_commands: deque[str] = deque(maxlen=5000)
        self._moves: dict[str, set[int]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._in_flight_uids: set[int] = set()  # being recorded: a later pass must not take them again
        self._progressed = asyncio.Event()  # set when a record finishes (its move can go)
        self._in_flight_bytes = 0
        self._failures = 0
        self._failure_streak = 0
        self._done_uids: list[int] = []
        self._attempt = 0

    # -- connection --------------------------------------------------------------------------------
    async def _connect(self) -> ImapSession:
        session = ImapSession(self.cfg)
        try:
            await session.open()
            await session.ensure_folders()
        except BaseException:
            self._account(session)
            await session.close()
            raise
        self.session = session
        log.info("connected", uidvalidity=session.uidvalidity, detail=" ".join(sorted(
            c for c in session.capabilities if c in ("IDLE", "MOVE", "UIDPLUS", "QRESYNC", "CONDSTORE"))))
        return session

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
            except Exception as exc:
                # IMAP trouble, the database or raw store away, or a bug: never a dead daemon, a reconnect.
                text = str(exc) if isinstance(exc, ImapError) else f"{exc.__class__.__name__} in the watcher"
                if not isinstance(exc, ImapError | SQLAlchemyError | OSError):
                    log.error("watcher_failed", error=exc.__class__.__name__)
                self.progress.connected = False
                self.progress.error(text)
                await self._drain_tasks(abandon_moves=True)
                await self._disconnect()
                if self.stop.is_set():
                    break
                delay = self._backoff(self._attempt)  # reset only by a pass that went through
                self._attempt += 1
                self.progress.set("reconnecting", f"reconnecting in {delay:.0f} s")
                log.warning("imap_error", error=text, attempts=self._attempt, backoff_s=round(delay, 1))
                await self._sleep(delay)
        await self._drain_tasks(abandon_moves=False)
        await self._disconnect()

    # -- watching ----------------------------------------------------------------------------------
    async def _watch(self, session: ImapSession) -> None:
        while not self.stop.is_set():
            if self._failures:
                # Recording failed (the database or raw store is down?): let the rest finish, wait, fetch again.
                await self._drain_tasks(abandon_moves=False)
                self._failure_streak += 1
                delay = self._backoff(self._failure_streak - 1)
                self.progress.set("retrying", f"{self._failures} not recorded, retrying in {delay:.0f} s")
                self._failures = 0
                await self._sleep(delay)
                if self.stop.is_set():
                    return
            session.protocol.new_mail = False
            self.kick.clear()
            did = await self.sync_pass(session)
            self._attempt = 0
            self.progress.ready = True
            if self.stop.is_set():
                return
            if self._failures:
                continue
            self._failure_streak = 0
            if session.protocol.new_mail or (did and not self._tasks):
                continue  # mail came in during the pass (or it did work): look again before idling
            if self._tasks:
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
                    reason = await session.idle(self.cfg.idle_interval, waker)
                finally:
                    relay.cancel()
                log.debug("idle_end", detail=reason)
            else:
                await self._wait_poll(session)

    async def _while_in_flight(self, session: ImapSession) -> None:
        """Until the records in flight are done, new mail shows, or a stop/kick: flush moves as records finish."""
        idle = self.cfg.use_idle and "IDLE" in session.capabilities
        while self._tasks and not (self.stop.is_set() or self.kick.is_set() or session.protocol.new_mail):
            self._progressed.clear()
            await self._settle(session)
            if not self._tasks or self._failures:
                return
            waker = asyncio.Event()
            relay = asyncio.ensure_future(self._relay(waker, self._progressed))
            try:
                if idle:
                    if await session.idle(self.cfg.noop_interval, waker) == "push":
                        return  # new mail: a pass takes it now, beside the records still in flight
                else:
                    with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                        await asyncio.wait_for(waker.wait(), self.cfg.noop_interval)
                    await session.noop()  # answers with EXISTS when mail came in
                    if session.protocol.new_mail:
                        return
            finally:
                relay.cancel()
        await self._settle(session)

    async def _settle(self, session: ImapSession) -> None:
        """Move what is recorded, then let go of the claims of what is done."""
        if self._moves:
            await self._flush_moves(session)
        await self._release_done(session.uidvalidity)

    async def _relay(self, waker: asyncio.Event, *more: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in (self.stop, self.kick, *more)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            waker.set()
        finally:
            for w in waits:
                w.cancel()

    async def _wait_poll(self, session: ImapSession) -> None:
        deadline = time.monotonic() + self.cfg.poll_interval
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

    async def sync_pass(self, session: ImapSession) -> bool:
        """Process the mailbox once. Returns True when it recorded or moved anything."""
        cfg, uv = self.cfg, session.uidvalidity
        uids = await session.search_all()
        known = await self.thread(claims.recorded, self.intake.sessions, cfg.account, cfg.mailbox, uv, uids)
        new = [u for u in uids if u not in known and u not in self._in_flight_uids]
        held = [u for u, (_rid, status) in known.items() if status == HELD]
        self.progress.held_in_mailbox = len(held)
        self.progress.backlog = len(new)
        did = False
        settled = sorted(u for u, (_rid, status) in known.items() if status != HELD)
        if settled:
            # Recorded but still here: moved by whoever claims them (not, at the same time, by the daemon
            # that recorded them, which keeps its claim until its own move is done).
            mine = await self.thread(claims.claim_recorded, self.intake.sessions, cfg.account, cfg.mailbox, uv,
                                     settled, self.owner, cfg.lease_seconds)
            for uid in mine:
                self._moves.setdefault(known[uid][1], set()).add(uid)
            if self._moves:
                did = True
                await self._flush_moves(session)
            if mine:
                await self.thread(claims.release_uids, self.intake.sessions, cfg.account, cfg.mailbox, uv,
                                  mine, self.owner)
        recognise = bool(new) and await self.thread(
            claims.has_other_uidvalidity, self.intake.sessions, cfg.account, cfg.mailbox, uv)
        total, done = len(new), 0
        for start in range(0, len(new), cfg.batch_size):
            if self.stop.is_set():
                break
            chunk = new[start : start + cfg.batch_size]
            claimed = await self.thread(claims.claim_many, self.intake.sessions, cfg.account, cfg.mailbox, uv, chunk,
                                        self.owner, cfg.lease_seconds)
            mine = [u for u in chunk if claimed.get(u) == claims.CLAIMED]
            metas = await session.fetch_meta(mine)
            gone = set(mine) - {m.uid for m in metas}
            if gone:  # expunged meanwhile (another daemon moved them)
                await self.thread(claims.release_uids, self.intake.sessions, cfg.account, cfg.mailbox, uv,
                                  sorted(gone), self.owner)
            i = 0
            while i < len(metas):
                group = self._next_group(metas, i)
                await self._wait_capacity(session, group)
                if self.stop.is_set():
                    rest = [m.uid for m in metas[i:]]
                    await self.thread(claims.release_uids, self.intake.sessions, cfg.account, cfg.mailbox, uv,
                                      rest, self.owner)
                    break
                self.progress.set("ingesting", f"ingesting {done + len(group)}/{total}")
                await self._start_group(session, group, recognise)
                did = True
                done += len(group)
                i += len(group)
            done += len(chunk) - len(metas)
            # Move what is recorded before letting go of its claims (see claims.claim_recorded).
            if self._moves:
                await self._flush_moves(session)
            await self._release_done(uv)
        if self.once:
            await self._drain_tasks(abandon_moves=False)
        # Otherwise the records still in flight finish on their own: the watch loop moves them as they do.
        await self._release_done(uv)
        self.progress.last_poll_at = dt.datetime.now(dt.UTC)
        self.progress.backlog = 0 if not self.stop.is_set() else self.progress.backlog
        return did

    def _weight(self, meta: Meta) -> int:
        """The memory a message takes while in flight: a too-large one is only its header block."""
        return 64 * 1024 if meta.size > self.intake.rules.max_message_bytes else meta.size

    def _next_group(self, metas: list[Meta], start: int) -> list[Meta]:
        """Small messages are fetched several at a time (one round trip); a big one alone."""
        group = [metas[start]]
        budget = min(FETCH_GROUP_BYTES, self.cfg.max_in_flight_bytes)
        total = self._weight(metas[start])
        if metas[start].size > self.intake.rules.max_message_bytes:
            return group
        for meta in metas[start + 1 :]:
            weight = self._weight(meta)
            # at most half the in-flight slots, so the next group downloads while this one is recorded
            if (len(group) >= min(FETCH_GROUP, max(1, self.cfg.max_in_flight // 2)) or total + weight > budget
                    or meta.size > self.intake.rules.max_message_bytes):
                break
            group.append(meta)
            total += weight
        return group

    async def _wait_capacity(self, session: ImapSession, group: list[Meta]) -> None:
        """At most max_in_flight messages, and max_in_flight_bytes of them, in memory at once;
        NOOP every noop_interval while waiting (long processing must not let the server drop us)."""
        need = sum(self._weight(m) for m in group)
        while self._tasks and (len(self._tasks) + len(group) > self.cfg.max_in_flight
                               or self._in_flight_bytes + need > self.cfg.max_in_flight_bytes):
            await self._wait_some(session)

    async def _wait_some(self, session: ImapSession) -> None:
        done, _ = await asyncio.wait(set(self._tasks), timeout=self.cfg.noop_interval,
                                     return_when=asyncio.FIRST_COMPLETED)
        if not done:
            await session.noop()
        self.progress.in_flight = len(self._tasks)

    async def _start_group(self, session: ImapSession, group: list[Meta], recognise: bool) -> None:
        cfg = self.cfg
        too_large = group[0].size > self.intake.rules.max_message_bytes
        # Decide before downloading: a too-large message gives its header block only, never its body.
        timeout = cfg.command_timeout + sum(m.size for m in group) / (256 * 1024)  # ≥ 256 KiB/s for big bodies
        if too_large:
            assert len(group) == 1
            header = await session.fetch_literal(group[0].uid, "HEADER", timeout)
            bodies = {group[0].uid: header} if header is not None else {}
        else:
            bodies = await session.fetch_bodies([m.uid for m in group], timeout)
        gone = [m.uid for m in group if m.uid not in bodies]
        if gone:
            await self.thread(claims.release_uids, self.intake.sessions, cfg.account, cfg.mailbox,
                              session.uidvalidity, gone, self.owner)
        for meta in group:
            raw = bodies.get(meta.uid)
            if raw is not None:
                self._start_one(ImapKey(cfg.account, cfg.mailbox, session.uidvalidity, meta.uid), meta, raw,
                                too_large, recognise)

    def _start_one(self, key: ImapKey, meta: Meta, raw: bytes, too_large: bool, recognise: bool) -> None:
        weight = len(raw)
        self._in_flight_bytes += weight
        self._in_flight_uids.add(key.uid)
        task = asyncio.ensure_future(self.thread(self._record, key, raw, meta, too_large, recognise))
        self._tasks.add(task)
        self.progress.in_flight = len(self._tasks)

        def finished(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            self._in_flight_uids.discard(key.uid)
            self._in_flight_bytes -= weight
            self._progressed.set()
            self._done_uids.append(key.uid)  # its claim is released in bulk at the end of the chunk
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                self._failures += 1
                self.progress.error(f"record_failed:{exc}")
                log.error("record_failed", uid=meta.uid, error=str(exc)[:120])
                return
            _rid, status = t.result()
            if status != HELD:
                self._moves.setdefault(status, set()).add(meta.uid)

        task.add_done_callback(finished)

    def _record(self, key: ImapKey, raw: bytes, meta: Meta, too_large: bool, recognise: bool) -> tuple[int, str]:
        """In a worker thread: the record, durable when this returns."""
        sessions = self.intake.sessions
        if recognise:
            sha = None if too_large else hashlib.sha256(raw).hexdigest()
            known = claims.rekey(sessions, key, sha, meta.size, meta.internaldate)
            if known is not None:
                log.info("recognised", record=known[0], uid=key.uid, uidvalidity=key.uidvalidity, status=known[1])
                return known
        arrival = Arrival(raw=raw, source="imap", received_at=meta.internaldate,
                          received_source="imap_internaldate" if meta.internaldate else None,
                          imap=key.as_dict(), size=meta.size if too_large else None)
        outcome = self.intake.process(arrival)
        return outcome.id, outcome.status

    async def _release_done(self, uidvalidity: int) -> None:
        """Release the claims of recorded messages (their records now keep them from being taken twice)."""
        # A message whose move is still pending keeps its claim (another daemon would move it too).
        pending: set[int] = set().union(*self._moves.values()) if self._moves else set()
        done = [u for u in self._done_uids if u not in pending]
        self._done_uids = [u for u in self._done_uids if u in pending]
        if done:
            await self.thread(claims.release_uids, self.intake.sessions, self.cfg.account, self.cfg.mailbox,
                              uidvalidity, done, self.owner)

    async def _drain_tasks(self, abandon_moves: bool) -> None:
        while self._tasks:
            if self.session is not None and not abandon_moves:
                try:
                    await self._wait_some(self.session)
                    continue
                except ImapError:
                    abandon_moves = True
            await asyncio.wait(set(self._tasks))
        if abandon_moves:
            self._moves.clear()  # the next pass finds them recorded and moves them
        elif self.session is not None and self._moves:
            await self._flush_moves(self.session)
        self.progress.in_flight = 0

    async def _flush_moves(self, session: ImapSession) -> None:
        for status in list(self._moves):
            uids = sorted(self._moves.get(status, ()))
            for start in range(0, len(uids), self.cfg.batch_size):
                part = uids[start : start + self.cfg.batch_size]
                await session.move(part, status)
                self._moves[status].difference_update(part)
                log.info("moved", folder=status, count=len(part))
            if not self._moves.get(status):
                self._moves.pop(status, None)
