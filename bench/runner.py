"""One benchmark run: a fresh Dovecot mailbox holding the corpus, the baseline, then `intake run`.

Backlog run: the whole corpus is APPENDed first, the baseline fetches and scans every message (the parallel
floor, one connection per core, then the sequential one), then the daemon starts against the backlog; it is
stopped once every message has a record and the inbox is empty.
Latency run: a fresh mailbox and database, the daemon idling, the corpus APPENDed at a steady rate;
the latency of a message is its record's `created_at` minus the moment its APPEND completed (UIDPLUS
APPENDUID names the UID, the record carries it).
Arrivals-during-backlog run: a backlog run without the floor, and a few seconds after the daemon is ready a
steady stream of other small and medium mail starts; each arrival's latency is measured as in the latency run,
and the backlog records are only counted (how many were still to come when the arrivals started and ended).
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import imaplib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench import baseline
from bench import signatures as signature_set
from bench.corpus import BIG, EXCEL, WORD, Item
from bench.procmon import TreeMonitor, cpu_seconds, load_average
from devkit.clamd import Clamd
from devkit.dovecot import Dovecot

VENV_BIN = Path(sys.executable).parent
INTAKE = str(VENV_BIN / "intake")
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# A tree whose `daemon` package the daemon imports instead of the installed one (before/after figures of a fix).
INTAKE_PYTHONPATH: str | None = None
# Extra [imap] keys for the daemon's config (e.g. max_in_flight_bytes), from --imap KEY=VALUE.
EXTRA_IMAP: dict[str, Any] = {}
# Extra environment for the daemon (e.g. MALLOC_ARENA_MAX=2), from --daemon-env KEY=VALUE.
DAEMON_ENV: dict[str, str] = {}


UNIT_FILE = Path(__file__).resolve().parent.parent / "deploy" / "intake.service"


def unit_environment(unit: Path = UNIT_FILE) -> dict[str, str]:
    """The daemon runs as production runs it: the Environment= lines of deploy/intake.service (the malloc
    arena limits), except the config path, which is the bench's own."""
    env: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            for item in line.removeprefix("Environment=").split():
                key, _, value = item.partition("=")
                if not key.startswith("INTAKE_"):
                    env[key] = value
    return env
_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")
# What the pipeline logs per stage, mapped to the split (record is derived, fetch measured aside).
STAGE_GROUPS = {"scan": "scan", "scan_attachments": "scan", "parse": "parse", "classify": "classify",
                "extract": "extract", "comment": "comment"}


# -- databases ----------------------------------------------------------------------------------------
@dataclass
class Database:
    kind: str  # sqlite | postgres
    url: str
    _pg_name: str | None = None

    @classmethod
    def fresh(cls, kind: str, workdir: Path, pg_admin_url: str = PG_ADMIN_URL) -> Database:
        if kind == "sqlite":
            workdir.mkdir(parents=True, exist_ok=True)
            return cls(kind, f"sqlite:///{workdir / 'intake.db'}")
        name = f"intake_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
        return cls(kind, url, name)

    def drop(self, pg_admin_url: str = PG_ADMIN_URL) -> None:
        if self._pg_name:
            admin = create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self._pg_name}" WITH (FORCE)'))
            admin.dispose()

    def count(self, engine: Any) -> int:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM messages")).scalar() or 0)

    def rows(self) -> list[dict[str, Any]]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                result = conn.execute(text(
                    "SELECT id, imap_uid, status, reasons, size, created_at, message_id FROM messages ORDER BY id"))
                out = []
                for row in result.mappings():
                    created = row["created_at"]
                    if isinstance(created, str):
                        created = dt.datetime.fromisoformat(created)
                    if created.tzinfo is None:
                        created = created.replace(tzinfo=dt.UTC)
                    reasons = row["reasons"]
                    if isinstance(reasons, str):
                        reasons = json.loads(reasons)
                    out.append({"id": row["id"], "uid": row["imap_uid"], "status": row["status"],
                                "reasons": reasons or [], "size": row["size"], "created": created.timestamp(),
                                "message_id": row["message_id"]})
                return out
        finally:
            engine.dispose()


# -- delivery -------------------------------------------------------------------------------------------
def _appenduid(data: Any) -> int:
    blob = b" ".join(x if isinstance(x, bytes) else str(x).encode() for x in (data or []))
    m = _APPENDUID.search(blob)
    if not m:
        raise RuntimeError("APPEND without APPENDUID (UIDPLUS)")
    return int(m[2])


def _connect(dovecot: Dovecot) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", dovecot.port, timeout=300)
    imap.login(dovecot.user, dovecot.password)
    return imap


def deliver(dovecot: Dovecot, items: list[Item]) -> dict[int, Item]:
    """APPEND every item to INBOX in order; return UID → item."""
    imap = _connect(dovecot)
    out: dict[int, Item] = {}
    try:
        for item in items:
            typ, data = imap.append("INBOX", "", None, Path(item.path).read_bytes())
            if typ != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")
            out[_appenduid(data)] = item
    finally:
        imap.logout()
    return out


# -- the daemon -----------------------------------------------------------------------------------------
@dataclass
class Daemon:
    workdir: Path
    db: Database
    clamd_url: str
    dovecot: Dovecot
    poll_interval: float = 5.0
    extra_imap: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    launched: float = 0.0
    log_path: Path | None = None
    monitor: TreeMonitor | None = None
    profiler: subprocess.Popen[bytes] | None = None
    profile_path: Path | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INTAKE_")}
        env["INTAKE_CONFIG"] = str(self.workdir / "intake.toml")
        env["INTAKE_IMAP_PASSWORD"] = self.dovecot.password
        if INTAKE_PYTHONPATH:
            env["PYTHONPATH"] = INTAKE_PYTHONPATH
        env.update(unit_environment())
        env.update(DAEMON_ENV)
        return env

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        imap = {"host": "127.0.0.1", "port": self.dovecot.port, "user": self.dovecot.user, "security": "plain",
                "poll_interval": self.poll_interval, **EXTRA_IMAP, **self.extra_imap}

        def value(v: Any) -> str:
            return json.dumps(v) if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)

        lines = ["[intake]", f"data_dir = {json.dumps(str(self.workdir / 'data'))}",
                 f"database_url = {json.dumps(self.db.url)}", "", "[scan]", f"clamd = {json.dumps(self.clamd_url)}",
                 "", "[imap]", *(f"{k} = {value(v)}" for k, v in imap.items()), ""]
        (self.workdir / "intake.toml").write_text("\n".join(lines))

    def upgrade(self) -> None:
        self.write_config()
        subprocess.run([INTAKE, "db", "upgrade"], env=self.env(), check=True, capture_output=True, timeout=300)

    def start(self, profile: bool = False) -> None:
        self.log_path = self.workdir / "intake.log"
        log = self.log_path.open("wb")
        self.launched = time.time()
        self.proc = subprocess.Popen([INTAKE, "--log-level", "INFO", "run"], env=self.env(),
                                     stdout=subprocess.DEVNULL, stderr=log)
        log.close()
        self.monitor = TreeMonitor(self.proc.pid).start()
        if profile:
            pyspy = shutil.which("py-spy", path=str(VENV_BIN)) or shutil.which("py-spy")
            if pyspy is None:
                raise RuntimeError("--profile needs py-spy: pip install py-spy")
            self.profile_path = self.workdir / "profile.txt"
            self.profiler = subprocess.Popen(
                [pyspy, "record", "--pid", str(self.proc.pid), "--subprocesses", "--nonblocking", "--rate", "100",
                 "--format", "raw", "--threads", "-o", str(self.profile_path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Until the daemon logs `ready`; returns that moment (epoch seconds, from the log)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.check_alive()
            for event in self.events():
                if event.get("event") == "ready":
                    return _ts(event)
            time.sleep(0.1)
        raise RuntimeError("intake run did not log 'ready' in time")

    def check_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path else ""
            raise RuntimeError(f"intake run exited with {self.proc.returncode}:\n{tail}")

    def events(self) -> list[dict[str, Any]]:
        assert self.log_path is not None
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    out.append(json.loads(line))
        return out

    def stop(self) -> int:
        assert self.proc is not None and self.monitor is not None
        self.monitor.sample()
        main_cpu = cpu_seconds(self.proc.pid)
        self.monitor.stop()
        self.monitor.main_cpu = max(self.monitor.main_cpu, main_cpu)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.profiler is not None:
            try:
                self.profiler.wait(60)
            except subprocess.TimeoutExpired:
                self.profiler.send_signal(signal.SIGINT)
                self.profiler.wait(30)
        return self.proc.returncode


def _ts(event: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def _inbox_count(dovecot: Dovecot) -> int:
    try:
        return dovecot.count("INBOX")
    except (OSError, imaplib.IMAP4.error):
        return -1


def wait_recorded(daemon: Daemon, n: int, dovecot: Dovecot, timeout: float, then_empty: bool = True) -> float | None:
    """Poll the database until n records exist (and the inbox is empty); the moment the inbox emptied."""
    engine = create_engine(daemon.db.url)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            daemon.check_alive()
            with contextlib.suppress(Exception):
                if daemon.db.count(engine) >= n:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"not every message was recorded within {timeout:.0f} s")
    finally:
        engine.dispose()
    if not then_empty:
        return None
    while time.time() < deadline:
        if _inbox_count(dovecot) == 0:
            return time.time()
        time.sleep(0.5)
    return None


# -- log analysis --------------------------------------------------------------------------------------
def per_message(events: list[dict[str, Any]]) -> dict[int, dict[str, float]]:
    """Each recorded message's stage times from the pipeline's events, by record id: seconds per stage group
    (STAGE_GROUPS; other stages under their own name), `record` derived as the time from its last `stage` event to
    its `recorded` event (duplicate-text lookup, raw fsync, commit), and `_started`, when its first stage began."""
    by_sha: dict[str, dict[str, float]] = defaultdict(dict)
    last_stage_at: dict[str, float] = {}
    out: dict[int, dict[str, float]] = {}
    for e in events:
        if e.get("component") != "pipeline":
            continue
        sha = str(e.get("sha", ""))
        if e.get("event") == "stage":
            seconds = float(e.get("duration_ms", 0.0)) / 1000
            at = _ts(e)
            parts = by_sha[sha]
            parts.setdefault("_started", at - seconds)
            group = STAGE_GROUPS.get(str(e.get("stage")), str(e.get("stage")))
            parts[group] = parts.get(group, 0.0) + seconds
            last_stage_at[sha] = at
        elif e.get("event") == "recorded" and sha in last_stage_at:
            by_sha[sha]["record"] = max(0.0, _ts(e) - last_stage_at[sha])
            out[int(e.get("record", 0))] = by_sha[sha]
    return out


def stage_split(events: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Wall time per stage summed over messages (from the `stage` events), with the record step (per_message),
    and the mean per stage of the first and the last 1,000 records."""
    per_record = per_message(events)
    totals: dict[str, float] = defaultdict(float)
    for parts in per_record.values():
        for k, v in parts.items():
            if not k.startswith("_"):
                totals[k] += v
    totals.setdefault("record", 0.0)
    ids = sorted(r["id"] for r in rows)
    windows: dict[str, dict[str, float]] = {}
    if len(ids) >= 2000:
        for label, chunk in (("first_1000", ids[:1000]), ("last_1000", ids[-1000:])):
            acc: dict[str, float] = defaultdict(float)
            for rid in chunk:
                for k, v in per_record.get(rid, {}).items():
                    if not k.startswith("_"):
                        acc[k] += v
            windows[label] = {k: v / len(chunk) for k, v in acc.items()}
    return {"wall_s_by_stage": dict(totals), "windows": windows}


def arrival_split(events: list[dict[str, Any]], rows: list[dict[str, Any]],
                  appended: dict[int, float]) -> dict[str, Any]:
    """Where an arrival's latency goes (the profile of the arrivals-during-backlog run): for each arrival,
    `pickup` from its APPEND to the start of its first stage (the look for new mail, the claim, the size and
    body fetch, a free place and a worker thread), each stage group's own time, `record` (per_message), and
    `between` (the rest: waits between stages for the GIL or a parse turn). Medians over all arrivals, and means
    over the slowest 5 % (those at or above p95), which are what the target is about."""
    per_record = per_message(events)
    looks = sorted(_ts(e) for e in events if e.get("event") == "arrivals_first")
    grouped = set(STAGE_GROUPS.values()) | {"record"}
    per: list[dict[str, float]] = []
    for r in rows:
        parts = per_record.get(int(r["id"]))
        at = appended.get(int(r["uid"] or -1))
        if parts is None or at is None or "_started" not in parts:
            continue
        started = parts["_started"]
        split: dict[str, float] = {"other_stages": 0.0}
        for k, v in parts.items():
            if k.startswith("_"):
                continue
            if k in grouped:
                split[k] = v
            else:
                split["other_stages"] += v
        split["pickup"] = max(0.0, started - at)
        # Within pickup: `look`, until the first look for new mail that logged a find after the APPEND (the
        # `arrivals_first` event, count only: taken as this arrival's), and `take`, the rest.
        k = bisect.bisect_left(looks, at)
        if k < len(looks) and looks[k] <= started:
            split["look"] = looks[k] - at
            split["take"] = split["pickup"] - split["look"]
        split["total"] = r["created"] - at
        split["between"] = max(0.0, split["total"] - sum(v for k, v in split.items()
                                                          if k not in ("total", "look", "take")))
        per.append(split)
    keys = ["pickup", "look", "take", *dict.fromkeys(STAGE_GROUPS.values()), "other_stages", "record", "between",
            "total"]
    if not per:
        return {"n": 0}
    cut = _pct([p["total"] for p in per], 0.95)
    slow = [p for p in per if p["total"] >= cut]
    return {"n": len(per), "median": {k: _pct([p.get(k, 0.0) for p in per], 0.5) for k in keys},
            "slowest_5pct_mean": {k: sum(p.get(k, 0.0) for p in slow) / len(slow) for k in keys},
            "slowest_n": len(slow)}


def look_profile(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The daemon's looks for new mail during a pass that found some (`arrivals_first`: how long since the look
    before, the search) and what taking them cost (`arrivals_taken`: claim and size fetch, the wait for a place,
    the body fetch and start): p50 and p95 of each, in ms."""
    fields = {"arrivals_first": ("since_last_look_ms", "search_ms"),
              "arrivals_taken": ("claim_ms", "wait_ms", "fetch_ms")}
    values: dict[str, list[float]] = defaultdict(list)
    for e in events:
        for key in fields.get(str(e.get("event")), ()):
            if isinstance(e.get(key), int | float):
                values[key].append(float(e[key]))
    return {k: {"n": len(v), "p50": _pct(v, 0.5), "p95": _pct(v, 0.95)} for k, v in values.items()}


def linear_check(rows: list[dict[str, Any]], start: float) -> dict[str, Any] | None:
    """Seconds per message over the first and the last 1,000 records (by commit time)."""
    times = sorted(r["created"] for r in rows)
    if len(times) < 2000:
        return None
    first = (times[999] - start) / 1000
    last = (times[-1] - times[-1001]) / 1000
    return {"first_1000_s_per_msg": first, "last_1000_s_per_msg": last, "ratio_last_first": last / first}


def pyspy_split(path: Path) -> dict[str, float]:
    """CPU samples (py-spy --nonblocking, idle threads excluded) by part, as shares of the resolved samples.

    Forkserver children are split into the re-import of the parent's __main__ (multiprocessing's
    `_fixup_main_from_path`) and the extraction proper; samples with no Python frame at all (the main thread
    between two reads, --nonblocking) are counted apart and left out of the shares."""
    rules = [
        ("extract child: re-import of __main__", ("_fixup_main_from_path", "_fixup_main_from_name")),
        ("extract child: extraction", ("_child (daemon/extract",)),
        ("extract child: fork / start", ("forkserver",)),
        ("multiprocessing resource tracker", ("resource_tracker",)),
        ("comment", ("comment_stage",)),
        ("extract (parent: pickling, waiting)", ("extract_texts",)),
        ("classify", ("classify_attachments",)),
        ("parse", ("parse_message",)),
        ("scan (client side)", ("scan_message", "scan_attachments")),
        ("record (raw fsync, DB commit)", ("commit_outcome", "find_duplicate_text")),
        ("identity / hash", ("content_identity", "_process (daemon/pipeline")),
        ("imap claims / health (DB)", ("daemon/store/claims", "write_health")),
        ("fetch (imap)", ("aioimaplib", "fetch_literal", "_handle_responses", "data_received")),
        ("start-up imports", ("<module>",)),
        ("event loop / other", ("",)),
    ]
    out: dict[str, float] = defaultdict(float)
    unresolved = 0
    if not path.exists():
        return {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        if all(f.startswith(("process ", "thread ")) for f in frames):
            unresolved += int(count)
            continue
        for label, needles in rules:
            if any(n in stack for n in needles):
                out[label] += int(count)
                break
    total = sum(out.values()) or 1
    shares = {k: v / total for k, v in sorted(out.items(), key=lambda kv: -kv[1])}
    shares["_resolved_samples"] = float(total)
    shares["_unresolved_samples"] = float(unresolved)
    return shares


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def latency_stats(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": _pct(values, 0.5), "p95": _pct(values, 0.95), "p99": _pct(values, 0.99),
            "max": max(values) if values else None}


# -- the runs ------------------------------------------------------------------------------------------------
@dataclass
class Services:
    root: Path
    clamd: Clamd  # the first clamd (all of them: clamds)
    clamds: list[Clamd] = field(default_factory=list)
    signatures: dict[str, Any] = field(default_factory=dict)  # which set, its counts, load time and RSS
    cache: bool = True  # clamd's clean-file cache on, as production runs it; then restarted before each run

    def fresh_cache(self) -> None:
        """Before a floor or an intake run: with the cache on, restart every clamd, so that no run finds the
        verdicts of the run before it (they scan the same corpus); the same URLs, a new process. With the cache
        off (`--no-clamd-cache`, BenchClamd) there is nothing to forget."""
        if not self.cache:
            return
        for c in self.clamds or [self.clamd]:
            c.stop()
            c.start(timeout=1800)

    def clamd_pid(self) -> int:
        assert self.clamd.proc is not None
        return self.clamd.proc.pid

    @property
    def clamd_url(self) -> str:
        """Every clamd, as INTAKE_CLAMD / `[scan] clamd` take them (the intake and the floor use them all)."""
        return ", ".join(c.url for c in self.clamds or [self.clamd])

    def clamd_cpu(self) -> float:
        """CPU seconds of every clamd so far (differences of this are the scans' CPU)."""
        return sum(cpu_seconds(c.proc.pid) for c in self.clamds or [self.clamd] if c.proc is not None)

    def dovecot(self, name: str) -> Dovecot:
        dovecot = Dovecot(self.root / name)
        dovecot.start()
        return dovecot


def _cleanup(dovecot: Dovecot, db: Database, workdir: Path) -> None:
    with contextlib.suppress(Exception):
        dovecot.stop()
    with contextlib.suppress(Exception):
        db.drop()
    shutil.rmtree(dovecot.workdir, ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)


def default_floor_workers() -> int:
    """The parallel floor's connections: one per core, as the intake's workers can use every core."""
    return os.cpu_count() or 1


def _floor(services: Services, dovecot: Dovecot, uid_items: dict[int, Item], workers: int) -> dict[str, Any]:
    """One floor run over the whole mailbox, with the CPU it cost (the bench process and every clamd)."""
    services.fresh_cache()
    clamd_cpu0 = services.clamd_cpu()
    load = load_average()
    client_cpu0 = time.process_time()  # the whole bench process: every worker thread's CPU is in it
    base = baseline.run("127.0.0.1", dovecot.port, dovecot.user, dovecot.password, services.clamd_url,
                        workers=workers)
    return {"messages": base.messages, "bytes": base.bytes, "wall_s": base.wall_s, "rate": base.rate,
            "fetch_s": base.fetch_s, "scan_s": base.scan_s, "infected": base.infected, "workers": base.workers,
            "per_worker": base.per_worker, "load_before": load,
            "clamd_cpu_s": services.clamd_cpu() - clamd_cpu0, "client_cpu_s": time.process_time() - client_cpu0,
            "fetch_s_small_medium": sum(v[0] for u, v in base.per_uid.items() if uid_items[u].kind != BIG),
            "fetch_s_big": sum(v[0] for u, v in base.per_uid.items() if uid_items[u].kind == BIG)}


def backlog_run(services: Services, items: list[Item], db_kind: str, tag: str, baseline_workers: int | None = None,
                profile: bool = False, skip_baseline: bool = False, timeout: float = 7200.0,
                sequential_baseline: bool = True) -> dict[str, Any]:
    """Deliver the corpus, run the floor, then drain the backlog with `intake run`.

    The floor (`baseline`) runs on `baseline_workers` connections (default: one per core); unless it is already
    sequential or `sequential_baseline` is off, the sequential floor (`baseline_sequential`) runs after it on the
    same mailbox. The ratios are stated against both; the parallel one is the target's."""
    out: dict[str, Any] = {"db": db_kind, "kind": "backlog", "tag": tag, "messages": len(items),
                           "load_before": load_average()}
    dovecot = services.dovecot(f"dovecot-{tag}")
    workdir = services.root / f"intake-{tag}"
    db = Database.fresh(db_kind, workdir)
    try:
        t0 = time.time()
        uid_items = deliver(dovecot, items)
        out["deliver_s"] = time.time() - t0
        out["corpus_bytes"] = sum(i.size for i in items)

        if not skip_baseline:
            # The parallel floor first, right after delivery, where the single floor used to run; both read the
            # mailbox with BODY.PEEK and clamd has its cache off, so the second floor finds the same work.
            workers = baseline_workers if baseline_workers is not None else default_floor_workers()
            out["load_before_baseline"] = load_average()
            out["baseline"] = _floor(services, dovecot, uid_items, workers)
            if sequential_baseline and out["baseline"]["workers"] > 1:
                out["baseline_sequential"] = _floor(services, dovecot, uid_items, 1)

        services.fresh_cache()  # no verdicts left in clamd from the run before (cache on, as production)
        daemon = Daemon(workdir, db, services.clamd_url, dovecot)
        daemon.upgrade()
        out["load_before_intake"] = load_average()
        clamd_cpu0 = services.clamd_cpu()
        daemon.start(profile=profile)
        ready = daemon.wait_ready()
        empty_at = wait_recorded(daemon, len(items), dovecot, timeout)
        clamd_cpu = services.clamd_cpu() - clamd_cpu0
        out["load_after_intake"] = load_average()
        assert daemon.monitor is not None
        mon = daemon.monitor
        code = daemon.stop()
        rows = db.rows()
        events = daemon.events()
        last = max(r["created"] for r in rows)
        drain = last - ready
        statuses: dict[str, int] = defaultdict(int)
        for r in rows:
            statuses[r["status"] + ("/too_large" if "too_large" in r["reasons"] else "")] += 1
        out["intake"] = {
            "exit_code": code, "startup_s": ready - daemon.launched, "drain_s": drain, "rate": len(rows) / drain,
            "until_inbox_empty_s": (empty_at - ready) if empty_at else None, "records": len(rows),
            "statuses": dict(statuses), "main_hwm_mb": mon.main_hwm_kb / 1024,
            "peak_tree_rss_mb": mon.peak_tree_rss_kb / 1024, "children_seen": len(mon.child_hwm_kb),
            "max_child_hwm_mb": mon.max_child_hwm_kb / 1024, "children_hwm_sum_mb": mon.children_hwm_sum_kb / 1024,
            "cpu_main_s": mon.main_cpu, "cpu_children_s": sum(mon.child_cpu.values()), "clamd_cpu_s": clamd_cpu,
            "stages": stage_split(events, rows), "linear": linear_check(rows, ready),
            "stopped_event": next((e for e in events if e.get("event") == "stopped"), None),
            "errors": [e for e in events if e.get("level") in ("error", "warning")][:20],
        }
        if profile and daemon.profile_path is not None:
            out["intake"]["pyspy"] = pyspy_split(daemon.profile_path)
            keep = services.root.parent / f"profile-{tag}.txt"
            with contextlib.suppress(OSError):
                shutil.copy(daemon.profile_path, keep)
                out["intake"]["pyspy_file"] = str(keep)
        intake_cpu = out["intake"]["cpu_main_s"] + out["intake"]["cpu_children_s"] + clamd_cpu
        out["intake"]["cpu_per_msg_ms"] = intake_cpu / len(rows) * 1000
        # Load-independent: CPU seconds spent per message (daemon + its children + clamd vs client + clamd).
        # `ratio_intake_to_baseline` and `cpu_ratio_baseline_to_intake` are against the floor that ran as
        # `baseline` (the parallel one unless --baseline-workers 1), the `_sequential` ones beside them.
        for key, suffix in (("baseline", "baseline"), ("baseline_sequential", "sequential")):
            if key in out:
                floor = out[key]
                out[f"ratio_intake_to_{suffix}"] = out["intake"]["rate"] / floor["rate"] if floor["rate"] else None
                floor_cpu = floor["clamd_cpu_s"] + floor["client_cpu_s"]
                floor["cpu_per_msg_ms"] = floor_cpu / max(1, floor["messages"]) * 1000
                per_msg = intake_cpu / len(rows)
                out[f"cpu_ratio_{suffix}_to_intake"] = (floor_cpu / max(1, floor["messages"])) / per_msg \
                    if per_msg else None
        return out
    finally:
        _cleanup(dovecot, db, workdir)


def _stream(dovecot: Dovecot, schedule: list[tuple[float, Item]], start: float,
            appended: dict[int, tuple[Item, float]], stats: dict[str, float], lock: threading.Lock) -> None:
    """APPEND each item at its due time (seconds after start) on one connection."""
    imap = _connect(dovecot)
    try:
        for due, item in schedule:
            pause = start + due - time.time()
            if pause > 0:
                time.sleep(pause)
            else:
                stats["max_lag_s"] = max(stats.get("max_lag_s", 0.0), -pause)
            raw = Path(item.path).read_bytes()
            typ, data = imap.append("INBOX", "", None, raw)
            if typ != "OK":
                raise RuntimeError(f"APPEND failed: {data!r}")
            with lock:
                appended[_appenduid(data)] = (item, time.time())
    finally:
        imap.logout()


def latency_run(services: Services, items: list[Item], db_kind: str, tag: str, rate: float,
                seconds: float, big_interval: float | None = 5.0, timeout: float = 3600.0) -> dict[str, Any]:
    """The daemon idles on an empty inbox; then mail arrives at a steady rate.

    The steady stream is the small and medium part of the corpus (no message over 5 MB) at `rate` per second;
    the big messages arrive on a second connection, one every `big_interval` seconds (None: they are part of
    the steady stream in their corpus order, i.e. 5 % of it)."""
    if big_interval is None:
        steady = items[: int(rate * seconds)]
        bigs: list[Item] = []
    else:
        steady = [i for i in items if i.kind != BIG][: int(rate * seconds)]
        bigs = [i for i in items if i.kind == BIG][: max(0, int(seconds / big_interval))]
    count = len(steady) + len(bigs)
    out: dict[str, Any] = {"db": db_kind, "kind": "latency", "tag": tag, "rate": rate, "messages": count,
                           "steady_messages": len(steady), "big_messages": len(bigs), "big_interval_s": big_interval,
                           "load_before": load_average()}
    dovecot = services.dovecot(f"dovecot-{tag}")
    workdir = services.root / f"intake-{tag}"
    db = Database.fresh(db_kind, workdir)
    try:
        services.fresh_cache()  # no verdicts left in clamd from the run before (cache on, as production)
        daemon = Daemon(workdir, db, services.clamd_url, dovecot)
        daemon.upgrade()
        daemon.start()
        daemon.wait_ready()
        time.sleep(1.0)  # let the first pass find the empty inbox and enter IDLE
        appended: dict[int, tuple[Item, float]] = {}
        lock = threading.Lock()
        steady_stats: dict[str, float] = {}
        big_stats: dict[str, float] = {}
        start = time.time() + 0.2
        threads = [threading.Thread(target=_stream, args=(dovecot, [(k / rate, it) for k, it in enumerate(steady)],
                                                          start, appended, steady_stats, lock))]
        if bigs and big_interval is not None:
            threads.append(threading.Thread(target=_stream, args=(
                dovecot, [((j + 0.5) * big_interval, it) for j, it in enumerate(bigs)], start, appended, big_stats,
                lock)))
        for t in threads:
            t.start()
        threads[0].join()
        out["append_s"] = time.time() - start
        out["achieved_rate"] = len(steady) / out["append_s"]
        for t in threads[1:]:
            t.join()
        out["max_append_lag_s"] = steady_stats.get("max_lag_s", 0.0)
        if len(appended) != count:
            raise RuntimeError(f"only {len(appended)} of {count} messages were appended")
        wait_recorded(daemon, count, dovecot, timeout, then_empty=False)
        assert daemon.monitor is not None
        mon = daemon.monitor
        out["load_after"] = load_average()
        daemon.stop()
        rows = db.rows()
        small, big, too_large = [], [], []
        for r in rows:
            got = appended.get(int(r["uid"] or -1))
            if got is None:
                continue
            item, at = got
            latency = r["created"] - at
            if item.kind != BIG:
                small.append(latency)
            elif "too_large" in r["reasons"]:
                too_large.append(latency)
            else:
                big.append(latency)
        out["small_medium"] = latency_stats(small)
        out["big_processed"] = latency_stats(big)
        out["big_too_large"] = latency_stats(too_large)
        out["main_hwm_mb"] = mon.main_hwm_kb / 1024
        out["peak_tree_rss_mb"] = mon.peak_tree_rss_kb / 1024
        return out
    finally:
        _cleanup(dovecot, db, workdir)


MEDIUM_KINDS = frozenset({WORD, EXCEL})  # the 意見書 attachments (50–400 KB); the rest of the non-big mix is small


def backlog_arrivals_run(services: Services, items: list[Item], arrivals: list[Item], db_kind: str, tag: str,
                         rate: float, seconds: float, delay: float = 3.0, timeout: float = 7200.0) -> dict[str, Any]:
    """A backlog (`items`) in the inbox, the daemon started on it, and `delay` s after its `ready` the small and
    medium `arrivals` APPENDed at `rate` per second for `seconds` (a deadline day: a backlog plus steady mail).

    No floor runs here, and the backlog run's throughput stays apart from this one: arrivals take their share of
    the daemon. An arrival's latency is measured as in `latency_run` (its record's created_at − its APPEND's end,
    matched by APPENDUID). The backlog left when the arrivals started and ended comes from the backlog records'
    created_at; `backlog_left_at_arrivals_end` 0 means the backlog drained first, and the figures are then no
    longer those of mail arriving during a backlog (`valid` false)."""
    arrivals = [i for i in arrivals if i.kind != BIG][: int(rate * seconds)]
    out: dict[str, Any] = {"db": db_kind, "kind": "backlog_arrivals", "tag": tag, "messages": len(items),
                           "backlog_messages": len(items), "arrival_messages": len(arrivals), "rate": rate,
                           "arrival_seconds": seconds, "arrival_delay_s": delay, "load_before": load_average()}
    dovecot = services.dovecot(f"dovecot-{tag}")
    workdir = services.root / f"intake-{tag}"
    db = Database.fresh(db_kind, workdir)
    try:
        t0 = time.time()
        backlog_uids = deliver(dovecot, items)
        out["deliver_s"] = time.time() - t0
        services.fresh_cache()  # no verdicts left in clamd from the run before (cache on, as production)
        daemon = Daemon(workdir, db, services.clamd_url, dovecot)
        daemon.upgrade()
        daemon.start()
        ready = daemon.wait_ready()
        start = max(ready + delay, time.time() + 0.2)
        appended: dict[int, tuple[Item, float]] = {}
        stats: dict[str, float] = {}
        _stream(dovecot, [(k / rate, it) for k, it in enumerate(arrivals)], start, appended, stats, threading.Lock())
        ended = time.time()
        daemon.check_alive()
        # A live cross-check of the figure derived below from created_at: records in the database right now.
        engine = create_engine(db.url)
        try:
            out["records_at_arrivals_end"] = db.count(engine)
        finally:
            engine.dispose()
        out["append_s"] = ended - start
        out["achieved_rate"] = len(arrivals) / out["append_s"] if out["append_s"] > 0 else None
        out["max_append_lag_s"] = stats.get("max_lag_s", 0.0)
        if len(appended) != len(arrivals):
            raise RuntimeError(f"only {len(appended)} of {len(arrivals)} arrivals were appended")
        wait_recorded(daemon, len(items) + len(arrivals), dovecot, timeout, then_empty=False)
        assert daemon.monitor is not None
        mon = daemon.monitor
        out["load_after"] = load_average()
        code = daemon.stop()
        rows = db.rows()
        events = daemon.events()
        backlog_done: list[float] = []
        small, medium = [], []
        arrival_at = [at for _item, at in appended.values()]
        for r in rows:
            uid = int(r["uid"] or -1)
            if uid in backlog_uids:
                backlog_done.append(r["created"])
            elif uid in appended:
                item, at = appended[uid]
                (medium if item.kind in MEDIUM_KINDS else small).append(r["created"] - at)
        drained = max(backlog_done) if backlog_done else ready
        first_arrival = min(arrival_at) if arrival_at else start
        ended = max(arrival_at) if arrival_at else ended  # the last APPEND's end, not the logout after it
        left_at_start = sum(1 for c in backlog_done if c > first_arrival) + len(items) - len(backlog_done)
        left_at_end = sum(1 for c in backlog_done if c > ended) + len(items) - len(backlog_done)
        out.update({
            "exit_code": code, "ready_to_first_arrival_s": first_arrival - ready,
            "backlog_left_at_arrivals_start": left_at_start, "backlog_left_at_arrivals_end": left_at_end,
            "backlog_records": len(backlog_done), "backlog_drain_s": drained - ready,
            "backlog_rate": len(backlog_done) / (drained - ready) if drained > ready else None,
            "arrivals_during_backlog": sum(1 for at in arrival_at if at < drained),
            "valid": left_at_end > 0,
            "small_medium": latency_stats(small + medium), "small": latency_stats(small),
            "medium": latency_stats(medium),
            "main_hwm_mb": mon.main_hwm_kb / 1024, "peak_tree_rss_mb": mon.peak_tree_rss_kb / 1024,
            "split": arrival_split(events, rows, {u: at for u, (_item, at) in appended.items()}),
            "looks": look_profile(events),
        })
        return out
    finally:
        _cleanup(dovecot, db, workdir)


class BenchClamd(Clamd):
    """The devkit's clamd with its clean-file cache off (`--no-clamd-cache`, the bench's way before issue 20):
    the baseline and the intake scan the same bytes, and whoever scans second must not get cached verdicts. It
    also charges the intake's second scan of each attachment in full, which production's cache makes ~1 %
    (BENCHMARKS.md, "The double scan"); by default the bench now keeps the cache and restarts clamd instead."""

    def write_config(self) -> Path:
        conf = super().write_config()
        with conf.open("a") as fh:
            fh.write("\nDisableCache yes\n")
        return conf


def start_services(root: Path, signatures: str = "test", clamd_count: int = 1, scale: float = 1.0,
                   cache: bool = True) -> Services:
    """`clamd_count` clamd, all on the same signatures: the tests' (EICAR only) or bench/signatures.py's
    production-like set, generated once into root/signatures and shared."""
    root.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"set": signatures, "clamd": clamd_count}
    db_dir = None
    if signatures == "production-like":
        t0 = time.monotonic()
        db_dir = root / "signatures"
        info["counts"] = signature_set.write(db_dir, scale)
        info["scale"], info["generate_s"] = scale, round(time.monotonic() - t0, 1)
    clamds = []
    for k in range(clamd_count):
        clamd = (Clamd if cache else BenchClamd)(root / (f"clamd{k}" if k else "clamd"), database_dir=db_dir)
        t0 = time.monotonic()
        clamd.start(timeout=1800)  # millions of signatures load in minutes on a busy machine
        info.setdefault("load_s", []).append(round(time.monotonic() - t0, 1))
        assert clamd.proc is not None
        info.setdefault("rss_mb", []).append(round(signature_set.rss_kb(clamd.proc.pid) / 1024))
        clamds.append(clamd)
    info["cache"] = "on (clamd restarted before each run)" if cache else "off (DisableCache yes)"
    return Services(root, clamds[0], clamds, info, cache)


def stop_services(services: Services) -> None:
    for clamd in services.clamds or [services.clamd]:
        with contextlib.suppress(Exception):
            clamd.stop()

