"""`intake run`: the asyncio service around the synchronous pipeline.

On one event loop:
- the IMAP watcher (daemon/sources/imap.py), when `[imap]` is configured;
- the LMTP/SMTP listeners (daemon/sources/lmtp/), when `[lmtp] enabled = true` (the hook below);
- the held-record retry loop: every `held` record, whatever its source, is retried from the raw store
  with capped backoff; when a retry settles an IMAP record, the watcher moves its IMAP copy;
- the health writer (`service_health` for `intake status`) and systemd notify: READY=1 once
  connected, WATCHDOG=1 from the loop, STATUS= lines;
- signals: SIGTERM/SIGINT stop taking new messages, finish those in flight (or abandon them safely after
  `stop_timeout`: nothing was acknowledged) and exit 0; SIGHUP reloads the rules.

The pipeline (`Intake.process`, `Intake.retry`) is synchronous and runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import resource
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from daemon import metrics
from daemon.alerts.sender import run_sender
from daemon.alerts.settings import load_alert_settings
from daemon.alerts.watch import AlertMonitor, storage_kind
from daemon.config import Config
from daemon.logs import get_logger
from daemon.model import HELD
from daemon.rules import RulesError, load_rules
from daemon.service.health import write_health
from daemon.service.options import ServiceOptions
from daemon.service.systemd import sd_notify, watchdog_interval
from daemon.sources.imap import FatalImapError, ImapConfig, ImapWatcher, Progress
from daemon.sources.imap.sync import PRIORITY_SLOTS
from daemon.store import claims, orphans

log = get_logger("service")
T = TypeVar("T")


class ServiceError(Exception):
    """The service cannot start or run; str() is one line for the operator."""


# How long the stop waits for the background tasks (health, watchdog, alert sender, retries, sweeps) once
# they are cancelled. They only sleep or wait on short database calls; one that does not end by then is left
# to the loop's shutdown rather than holding the stop (systemd would kill -9 after TimeoutStopSec).
BACKGROUND_GRACE = 3.0


def worker_threads(imap: ImapConfig | None) -> int:
    """The daemon's worker threads: max_in_flight records, PRIORITY_SLOTS more for new mail during a backlog pass,
    and 4 for claims, moves and LMTP deliveries (LMTP alone: 4 + 4). Each holds at most one database connection,
    so the connection pool keeps as many (`intake run`)."""
    return (imap.max_in_flight + PRIORITY_SLOTS if imap else 4) + 4


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds; True when it is set.

    Not `asyncio.wait_for(event.wait(), …)`: on Python 3.11 wait_for swallows a cancellation that arrives
    while the awaited future has just completed (bpo-42130), so a loop around it never ends when cancelled
    at that moment. That was the stop that did not stop. `asyncio.wait` never swallows a cancellation."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()
    return event.is_set()


def _forced_exit() -> None:
    log.error("stop_forced", detail="the stop did not finish in time; exiting without the loop's shutdown")
    sys.stderr.flush()
    os._exit(0)


# -- the service ------------------------------------------------------------------------------------
class Service:
    def __init__(self, config: Config, intake: Any, options: ServiceOptions, imap: ImapConfig | None) -> None:
        self.config = config
        self.intake = intake
        self.options = options
        self.imap = imap
        self.owner = claims.new_owner()
        self.stop = asyncio.Event()
        self.progress = Progress()
        self.watcher: ImapWatcher | None = None
        self.abandoned = False  # worker threads still ran when the service stopped
        self.exit_code = 0
        self._executor = ThreadPoolExecutor(max_workers=worker_threads(imap), thread_name_prefix="intake")
        self._clamd: tuple[bool | None, str | None] = (None, None)
        self._last_status_line = ""
        # Alerts (daemon/alerts): the watchers' state machines, fed from the health loop and the pipeline.
        self.alert_settings = load_alert_settings(config)
        self.monitor = AlertMonitor(intake.sessions, self.alert_settings)
        if hasattr(intake, "on_storage_error"):
            intake.on_storage_error.append(lambda exc: self.monitor.storage_failed(storage_kind(exc)))
        self._last_held_check = -1e9
        self._stop_at: float | None = None

    def _stop_grace(self) -> float:
        """What is left of `stop_timeout` since the signal: IMAP and LMTP drain within one budget."""
        if self._stop_at is None:
            return self.options.stop_timeout
        return max(0.0, self.options.stop_timeout - (asyncio.get_running_loop().time() - self._stop_at))

    async def thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    # -- signals -----------------------------------------------------------------------------------
    def _on_stop(self) -> None:
        if not self.stop.is_set():
            log.info("stopping")
            sd_notify("STOPPING=1", "STATUS=stopping")
            self.progress.set("stopping", "stopping")
            self._stop_at = asyncio.get_running_loop().time()
            # The last resort of a bounded stop: in-flight work gets stop_timeout, the rest a few seconds; if
            # the process is still there well after that, something swallowed a cancellation. Leaving is
            # safe (nothing is acknowledged before it is durable) and beats systemd's kill -9.
            timer = threading.Timer(self.options.stop_timeout + 2 * BACKGROUND_GRACE + 10, _forced_exit)
            timer.daemon = True
            timer.start()
        self.stop.set()

    def _on_reload(self) -> None:
        try:
            rules = load_rules(self.config.rules_path)
        except RulesError as exc:
            log.error("rules_reload_failed", error=str(exc)[:200])
            self.progress.error(f"rules reload failed: {exc}")
            return
        self.intake.rules = rules
        log.info("rules_reloaded")

    # -- main --------------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload)
        sd_notify("STATUS=starting")
        background: list[asyncio.Task[Any]] = []
        servers: list[Any] = []
        metrics_server: Any = None
        stop_lmtp: Any = None
        try:
            try:
                dead = await self.thread(claims.release_dead_local, self.intake.sessions, self.owner)
            except SQLAlchemyError as exc:
                raise ServiceError(f"database unreachable ({exc.__class__.__name__})") from None
            if dead:
                log.info("released_dead_leases", count=dead)
            await self._sweep_orphans()
            await self._write_health()
            background.append(asyncio.ensure_future(
                run_sender(self.intake.sessions, self.alert_settings, self.stop, monitor=self.monitor)))
            metrics_server = metrics.start_metrics(self.config.raw, self.intake.sessions)
            background.append(asyncio.ensure_future(self._health_loop()))
            background.append(asyncio.ensure_future(self._watchdog_loop()))

            # --- LMTP hook: the listeners of daemon/sources/lmtp/ on this same loop ----------------
            lmtp_table = self.config.raw.get("lmtp")
            if isinstance(lmtp_table, dict) and (lmtp_table.get("enabled") is True
                                                 or lmtp_table.get("smtp_enabled") is True):
                from daemon.sources import lmtp  # lazily: only a service with LMTP on needs aiosmtpd

                try:
                    servers = await lmtp.start_lmtp(self.intake, lmtp.LmtpConfig.from_config(self.config.raw),
                                                    thread=self.thread)
                except lmtp.ListenerError as exc:
                    raise ServiceError(str(exc)) from None
                stop_lmtp = lmtp.stop_lmtp
            # --- end of the LMTP hook ------------------------------------------------------------

            if self.imap is None and not servers:
                raise ServiceError("nothing to run: configure [imap] (and/or [lmtp] enabled = true)")
            if self.imap is not None:
                self.watcher = ImapWatcher(self.imap, self.intake, self.owner, self.stop, self.thread,
                                           self.progress, once=self.options.once)
                try:
                    await self.watcher.connect_first()
                except FatalImapError as exc:
                    raise ServiceError(f"imap: {exc}") from None
            doors = ([f"imap {self.imap.mailbox}"] if self.imap is not None else []) + sorted(
                {"lmtp socket" if sock.family.name == "AF_UNIX" else "lmtp/smtp tcp"
                 for server in servers for sock in (server.sockets or ())})
            line = ("connected" if self.imap is not None else "listening") + ": " + ", ".join(doors)
            sd_notify("READY=1", f"STATUS={line}")
            self.progress.set("running", line)
            log.info("ready", pending=0)
            if not self.options.once:
                background.append(asyncio.ensure_future(self._retry_loop()))
                background.append(asyncio.ensure_future(self._orphan_loop()))
            if self.watcher is not None:
                await self._run_watcher()
            else:
                await self.stop.wait()
            return self.exit_code
        finally:
            self.stop.set()
            if stop_lmtp is not None:
                with contextlib.suppress(Exception):
                    await stop_lmtp(servers, grace=self._stop_grace())
            if metrics_server is not None:
                metrics_server.shutdown()
            for task in background:
                task.cancel()
            if background:
                _, stuck = await asyncio.wait(background, timeout=BACKGROUND_GRACE)
                if stuck:  # never wait on them: the stop is bounded (TimeoutStopSec), they hold nothing durable
                    log.warning("stop_left_tasks", count=len(stuck))
            await self._finish()

    async def _run_watcher(self) -> None:
        assert self.watcher is not None
        task = asyncio.ensure_future(self.watcher.run())
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                # Stopping: the watcher takes no new message and finishes those in flight.
                done, _ = await asyncio.wait({task}, timeout=self._stop_grace())
                if not done:
                    log.warning("stop_timeout", in_flight=self.progress.in_flight)
                    task.cancel()
                    self.abandoned = True
                    # Bounded too: a watcher that does not end on cancel must not hold the stop.
                    await asyncio.wait({task}, timeout=BACKGROUND_GRACE)
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        finally:
            stopper.cancel()
        if self.options.once:
            self.stop.set()

    async def _finish(self) -> None:
        # Claims not finished are released: another daemon (or the next start) takes them at once. These run
        # on threads of their own, not the pool: after a stop_timeout the pool's threads may all still be busy.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.to_thread(claims.release_owner, self.intake.sessions, self.owner), 10)
        self.progress.set("stopped", "stopped")
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.to_thread(
                write_health, self.intake.sessions, self.owner, self.progress,
                self.imap.mailbox if self.imap else None, self._clamd), 10)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        log.info("stopped", rss_kb=peak, imap_bytes=self.watcher.bytes_received if self.watcher else None,
                 detail="abandoned in-flight work" if self.abandoned else None)
        self._executor.shutdown(wait=not self.abandoned, cancel_futures=True)

    # -- held records ------------------------------------------------------------------------------
    async def _retry_loop(self) -> None:
        """Retry every held record from the raw store, with capped exponential backoff and jitter while
        they stay held (an infrastructure failure is retried for as long as it lasts)."""
        opts = self.options
        delay = opts.retry_initial
        while not self.stop.is_set():
            await self._sleep(delay * random.uniform(0.8, 1.0))
            if self.stop.is_set():
                return
            try:
                still_held = await self._retry_round()
            except (SQLAlchemyError, OSError) as exc:
                log.warning("retry_round_failed", error=exc.__class__.__name__)
                still_held = True
            delay = min(opts.retry_max, delay * 2) if still_held else opts.retry_initial

    async def _retry_round(self) -> bool:
        from daemon.pipeline import StorageError

        ids = await self.thread(claims.held_records, self.intake.sessions)
        if not ids:
            return False
        ping = getattr(self.intake.scanner, "ping", None)
        if ping is not None and not await self.thread(ping):
            log.warning("retry_deferred", pending=len(ids), error="clamd_unreachable")
            return True
        still_held = False
        for rid in ids:
            if self.stop.is_set():
                break
            if not await self.thread(claims.claim_held, self.intake.sessions, rid, self.owner,
                                     self.options.lease_seconds):
                continue
            try:
                outcome = await self.thread(self.intake.retry, rid)
            except (StorageError, LookupError) as exc:
                log.warning("retry_failed", record=rid, error=str(exc)[:120])
                await self.thread(claims.unclaim_held, self.intake.sessions, rid, self.owner)
                still_held = True
                continue
            status, key = outcome.status, outcome.imap
            if status == HELD:
                still_held = True
                await self.thread(claims.unclaim_held, self.intake.sessions, rid, self.owner)
                continue
            log.info("retry_settled", record=rid, status=status)
            if key is not None and self.watcher is not None:
                self.watcher.kick.set()  # its IMAP copy goes to the folder for its new status
        return still_held

    # -- raw files with no record ----------------------------------------------------------------------
    async def _sweep_orphans(self) -> None:
        """Remove raw files no record names, older than `orphan_grace` (daemon/store/orphans.py)."""
        try:
            removed = await self.thread(orphans.remove_orphans, self.intake.sessions, self.intake.raw_store,
                                        self.options.orphan_grace)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("orphan_sweep_failed", error=exc.__class__.__name__)
            return
        if removed:
            log.info("orphans_removed", count=removed)

    async def _orphan_loop(self) -> None:
        while not self.stop.is_set():
            await self._sleep(self.options.orphan_sweep_interval)
            if not self.stop.is_set():
                await self._sweep_orphans()

    async def _sleep(self, seconds: float) -> None:
        await wait_event(self.stop, seconds)

    # -- health ------------------------------------------------------------------------------------
    async def _health_loop(self) -> None:
        last_clamd = -1e9
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            await wait_event(self.progress.changed, self.options.health_interval)
            self.progress.changed.clear()
            if self.stop.is_set():
                return  # the stop writes the last health row itself (_finish)
            if loop.time() - last_clamd >= self.options.clamd_check_interval:
                last_clamd = loop.time()
                self._clamd = await self.thread(self._check_clamd)
                if self._clamd[0] is not None:
                    await self.thread(self._observe_scanner, self._clamd)
            if self.imap is not None and self.progress.ready:
                problem = self.progress.problem or (  # the watcher says when the cause is authentication
                    "login_refused" if "refused" in (self.progress.last_error or "") else "unreachable")
                with contextlib.suppress(Exception):
                    await self.thread(self.monitor.observe_mailbox, self.progress.connected, None, problem)
            if loop.time() - self._last_held_check >= 60:
                self._last_held_check = loop.time()
                with contextlib.suppress(Exception):
                    await self.thread(self.monitor.check_held)
            line = self.progress.status_line
            if line != self._last_status_line:
                sd_notify(f"STATUS={line}")
                self._last_status_line = line
            with contextlib.suppress(Exception):
                await self._write_health()
            await self._sleep(1.0)  # at most one write a second

    def _observe_scanner(self, clamd: tuple[bool | None, str | None]) -> None:
        with contextlib.suppress(Exception):  # an alert problem must never stop the health loop
            self.monitor.observe_scanner(bool(clamd[0]))
            if clamd[0]:
                self.monitor.observe_scanner_version(clamd[1])

    def _check_clamd(self) -> tuple[bool | None, str | None]:
        scanner = self.intake.scanner
        ok = scanner.ping() if hasattr(scanner, "ping") else None
        version = scanner.version() if ok and hasattr(scanner, "version") else None
        return ok, version

    async def _write_health(self) -> None:
        await self.thread(write_health, self.intake.sessions, self.owner, self.progress,
                          self.imap.mailbox if self.imap else None, self._clamd)

    async def _watchdog_loop(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        while not self.stop.is_set():
            sd_notify("WATCHDOG=1")
            await self._sleep(interval)
