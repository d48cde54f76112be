"""One IMAP connection with the watched mailbox selected: every command the intake sends, each with a timeout.

A command fails at once when the connection drops (`conn_lost_cb`), and after any `ImapError` the session
is thrown away: the watcher reconnects. Bodies are always fetched with `BODY.PEEK[]`, never `RFC822`, which
would set \\Seen. aioimaplib reports no UIDVALIDITY, so it is read from the SELECT answer
(daemon/sources/imap/responses.py reads every answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import aioimaplib
from aioimaplib.aioimaplib import quoted

from daemon.logs import get_logger
from daemon.sources.imap.auth import (
    ABORT_RESPONSE,
    XOAUTH2,
    NoMechanism,
    challenge_status,
    choose_mechanism,
    oauthbearer_response,
    refusal_cause,
    xoauth2_response,
)
from daemon.sources.imap.client import ImapClient, ImapProtocol
from daemon.sources.imap.config import ImapConfig
from daemon.sources.imap.responses import (
    Meta,
    ShortLiteral,
    parse_delimiter,
    parse_folder_names,
    parse_literals,
    parse_meta,
    parse_search,
    parse_uidvalidity,
    uid_set,
)
from daemon.sources.imap.tokens import AccessToken, TokenError, TokenSource, make_source

log = get_logger("imap")
T = TypeVar("T")


class ImapError(Exception):
    """Trouble with the IMAP server or connection; str() is short and carries no message data.
    `cause` is the socket or TLS error behind a failed connection, if any (`intake check` names it)."""

    def __init__(self, text: str, cause: BaseException | None = None, auth: bool = False) -> None:
        super().__init__(text)
        self.cause = cause
        self.auth = auth  # the cause is authentication: a refused login or token, no token to be had


class FatalImapError(ImapError):
    """Not worth retrying at start: wrong password, a refused token or client secret, untrusted certificate."""


class ImapSession:
    """One authenticated connection with the mailbox selected. Every command has a timeout and fails
    at once when the connection is lost; after any ImapError the session is discarded."""

    def __init__(self, cfg: ImapConfig, tokens: TokenSource | None = None) -> None:
        self.cfg = cfg
        self.tokens = tokens if tokens is not None or cfg.oauth2 is None else make_source(cfg.oauth2)
        self.token: AccessToken | None = None  # the OAuth 2.0 token this session logged in with
        self.mechanism = "LOGIN"
        self.client: ImapClient | None = None
        self.lost: asyncio.Future[None] | None = None
        self.uidvalidity = 0
        self.delimiter: str | None = "."
        self.capabilities: set[str] = set()

    @property
    def protocol(self) -> ImapProtocol:
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

    # -- opening: connect, log in, learn the server, select ------------------------------------------
    async def open(self, readonly: bool = False) -> None:
        await self.connect()
        await self.login()
        await self.negotiate()
        await self.select(readonly)

    async def connect(self) -> None:
        """TCP, implicit TLS (the chain and the host name verified) and the server's greeting."""
        cfg = self.cfg
        context: ssl.SSLContext | None = None
        if cfg.security == "tls":
            context = ssl.create_default_context(cafile=cfg.cafile)  # verifies the chain and the host name
        loop = asyncio.get_running_loop()
        self.lost = loop.create_future()
        self.client = ImapClient(host=cfg.host, port=cfg.port, timeout=cfg.command_timeout,
                                 conn_lost_cb=self._on_lost, ssl_context=context)
        try:
            await asyncio.wait_for(self.client.wait_hello_from_server(), cfg.connect_timeout)
        except ssl.SSLCertVerificationError as exc:
            raise FatalImapError(f"TLS certificate of {cfg.label} not trusted ({exc.verify_message})",
                                 exc) from None
        except ssl.SSLError as exc:
            raise ImapError(f"TLS handshake with {cfg.label} failed ({exc.reason or exc.__class__.__name__})",
                            exc) from None
        except TimeoutError as exc:
            raise ImapError(f"no answer from {cfg.label} within {cfg.connect_timeout:g} s", exc) from None
        except OSError as exc:
            raise ImapError(f"cannot connect to {cfg.label} ({exc.strerror or exc.__class__.__name__})",
                            exc) from None
        except aioimaplib.AioImapException as exc:
            raise ImapError(f"{cfg.label} did not greet as an IMAP server ({exc.__class__.__name__})", exc) from None
        if self.lost.done():
            raise ImapError(f"connection to {cfg.label} closed at once")

    async def login(self) -> None:
        assert self.client is not None
        if self.tokens is not None:
            await self._login_oauth2(self.tokens)
            return
        response = await self._cmd(self.client.login(self.cfg.user, self.cfg.password), what="login")
        if response.result != "OK":
            raise FatalImapError(f"login to {self.cfg.label} refused (check imap.user and the password)", auth=True)

    @property
    def reauth_at(self) -> float | None:
        """When this session must make way for one with a fresh token (seconds since the epoch), if ever."""
        if self.token is None or self.cfg.oauth2 is None:
            return None
        return self.token.renew_at(self.cfg.oauth2.renew_before)

    async def _token(self, tokens: TokenSource, force: bool) -> AccessToken:
        try:
            return await asyncio.to_thread(tokens.token, force)
        except TokenError as exc:
            error = FatalImapError if exc.refused else ImapError
            raise error(f"no OAuth 2.0 token: {exc}", auth=True) from None

    async def _login_oauth2(self, tokens: TokenSource) -> None:
        """AUTHENTICATE with a bearer token: renewed before it expires (TokenSource) and once more when the
        server refuses it (revoked, or the cached one no longer good); a second refusal names the likely cause."""
        cfg = self.cfg
        assert cfg.oauth2 is not None
        if not any(c.upper().startswith("AUTH=") for c in self.protocol.capabilities):
            await self._cmd(self.protocol.capability(), what="capability")
        capabilities = {c.upper() for c in self.protocol.capabilities}
        try:
            mechanism = choose_mechanism(cfg.oauth2.mechanism, capabilities)
        except NoMechanism as exc:
            raise FatalImapError(f"{cfg.label}: {exc}", auth=True) from None
        self.mechanism = mechanism
        status: str | None = None
        for attempt in range(2):
            token = await self._token(tokens, force=attempt > 0)
            initial = (xoauth2_response(cfg.user, token.value) if mechanism == XOAUTH2
                       else oauthbearer_response(cfg.user, token.value, cfg.host, cfg.port))
            response = await self._cmd(self.protocol.authenticate(mechanism, initial, ABORT_RESPONSE[mechanism],
                                                                  "SASL-IR" in capabilities), what="login")
            if response.result == "OK":
                self.token = token
                return
            status = challenge_status(self.protocol.sasl_challenges[-1] if self.protocol.sasl_challenges else None)
            log.warning("oauth2_login_refused", attempts=attempt + 1, detail=f"{mechanism} {status or ''}".strip())
        cause = refusal_cause(cfg.oauth2.source, status)
        raise FatalImapError(f"login to {cfg.label} with {mechanism} refused: {cause}", auth=True)

    async def negotiate(self) -> None:
        """The server's capabilities, QRESYNC where offered, and its hierarchy delimiter."""
        assert self.client is not None
        await self._cmd(self.protocol.capability(), what="capability")
        self.capabilities = {c.upper() for c in self.protocol.capabilities}
        if self.cfg.use_qresync and "QRESYNC" in self.capabilities and "ENABLE" in self.capabilities:
            await self._cmd(self.client.enable("QRESYNC"), what="enable")
        listing = self._check(await self._cmd(self.client.list('""', '""'), what="list"), "list")
        self.delimiter = parse_delimiter(listing.lines)

    async def select(self, readonly: bool = False) -> None:
        """SELECT the mailbox (EXAMINE when `readonly`) and read its UIDVALIDITY, which must be there."""
        assert self.client is not None
        mailbox = quoted(self.cfg.mailbox)
        command = self.client.examine(mailbox) if readonly else self.client.select(mailbox)
        response = self._check(await self._cmd(command, what="select"), "select")
        if readonly:
            # aioimaplib moves to SELECTED after SELECT only: after EXAMINE it would refuse UID SEARCH/FETCH
            # ("command UID illegal in state AUTH") although the server has the mailbox open (RFC 3501 6.3.2).
            self.protocol.state = aioimaplib.SELECTED
        self.uidvalidity = parse_uidvalidity(response.lines) or self.uidvalidity
        if not self.uidvalidity:
            raise ImapError("select_without_uidvalidity")

    # -- folders --------------------------------------------------------------------------------------
    def folder(self, status: str) -> str:
        """The configured folder name ('Intake/Accepted') with the server's hierarchy delimiter."""
        name = self.cfg.folders[status]
        return name.replace("/", self.delimiter) if self.delimiter else name

    async def ensure_folders(self) -> None:
        assert self.client is not None
        listing = self._check(await self._cmd(self.client.list('""', '"*"'), what="list"), "list")
        existing = parse_folder_names(listing.lines)
        for status in self.cfg.folders:
            name = self.folder(status)
            if name in existing:
                continue
            response = await self._cmd(self.client.create(quoted(name)), what="create")
            if response.result != "OK" and b"ALREADYEXISTS" not in b" ".join(bytes(x) for x in response.lines):
                raise ImapError(f"create_refused:{status}")
            log.info("folder_created", folder=status)

    # -- messages -------------------------------------------------------------------------------------
    async def search_all(self) -> list[int]:
        assert self.client is not None
        response = self._check(await self._cmd(self.client.uid_search("ALL", charset=None), what="search"), "search")
        return parse_search(response.lines)

    async def search_from(self, uid: int) -> list[int]:
        """`UID SEARCH UID <uid>:*`. The server always answers with the highest UID even when it is below `uid`
        (RFC 3501 6.4.8: `*` is the highest): the caller keeps only those above what it has seen."""
        assert self.client is not None
        response = self._check(await self._cmd(self.client.uid_search(f"UID {max(1, uid)}:*", charset=None),
                                               what="search"), "search")
        return parse_search(response.lines)

    async def fetch_meta(self, uids: list[int]) -> list[Meta]:
        assert self.client is not None
        if not uids:
            return []
        response = self._check(await self._cmd(
            self.client.uid("fetch", uid_set(uids), "(UID RFC822.SIZE INTERNALDATE)"), what="fetch_meta"), "fetch")
        return parse_meta(response.lines, uids)

    async def fetch_literal(self, uid: int, section: str, timeout: float) -> bytes | None:
        """One message's BODY.PEEK[<section>] (section '' = the whole message); None if it is gone."""
        return (await self._fetch_literals([uid], section, timeout)).get(uid)

    async def fetch_bodies(self, uids: list[int], timeout: float) -> dict[int, bytes]:
        """BODY.PEEK[] of several (small) messages in one command: uid → raw bytes; gone ones are absent."""
        return await self._fetch_literals(uids, "", timeout)

    async def _fetch_literals(self, uids: list[int], section: str, timeout: float) -> dict[int, bytes]:
        assert self.client is not None
        response = self._check(await self._cmd(
            self.client.uid("fetch", uid_set(uids), f"(UID BODY.PEEK[{section}])"), timeout=timeout,
            what="fetch_body"), "fetch")
        try:
            return parse_literals(response.lines, section, uids)
        except ShortLiteral:
            raise ImapError("fetch_body_short") from None

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

    # -- staying connected ----------------------------------------------------------------------------
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


async def try_login(cfg: ImapConfig) -> str:
    """For `intake check`: connect, log in and open the watched mailbox read-only (EXAMINE) the way the daemon
    does (the same TLS checks and timeouts). Returns the line of a passing check; raises ImapError whose str()
    is the line of a failing one, saying what to fix. With OAuth 2.0 the token is obtained first, so a refused
    client secret is told apart from a refused login."""
    session = ImapSession(cfg)
    obtained = ""
    if session.tokens is not None:
        try:
            token = await session._token(session.tokens, force=False)
        except ImapError as exc:
            raise ImapError(f"{cfg.label}: {exc}") from None
        obtained = (f"token from {session.tokens.describe()} (expires in "
                    f"{max(0, int(token.expires_at - session.tokens.clock())) // 60} min), ")
    try:
        try:
            await session.connect()
        except ImapError as exc:
            if isinstance(exc.cause, ssl.SSLError):
                raise ImapError(f"{cfg.label}: TLS failed ({exc.cause.__class__.__name__}): check imap.cafile / "
                                "the server's certificate") from None
            why = exc.cause.__class__.__name__ if exc.cause is not None else str(exc)
            raise ImapError(f"{cfg.label}: unreachable ({why}): check imap.host and port") from None
        try:
            await session.login()
        except FatalImapError as exc:
            if session.tokens is not None:
                raise ImapError(str(exc) if cfg.label in str(exc) else f"{cfg.label}: {exc}") from None
            raise ImapError(f"{cfg.label}: login refused: check imap.user and the password "
                            "(imap.password_file, $INTAKE_IMAP_PASSWORD or the imap-password credential)") from None
        except ImapError as exc:
            raise ImapError(f"{cfg.label}: login failed ({exc})") from None
        try:
            await session.select(readonly=True)
        except ImapError:
            raise ImapError(f"{cfg.label}: mailbox {cfg.mailbox!r} cannot be opened: check imap.mailbox") from None
        if session.tokens is not None:
            return (f"{cfg.label}: {obtained}login as the configured user with {session.mechanism} works, "
                    f"{cfg.mailbox} opens")
        return f"{cfg.label}: login as the configured user works, {cfg.mailbox} opens"
    finally:
        await session.close()
