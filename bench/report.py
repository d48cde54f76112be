"""BENCHMARKS.md: the machine, the versions, the command and the figures (medians over the runs).

Everything above the notes marker is generated; the hand-written analysis below it is kept when the
report is written again.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sqlite3
import statistics
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.corpus import BIG, MIX, Item

NOTES_MARKER = "<!-- notes: everything below this line is hand-written and kept when bench rewrites the file -->"
TARGET_RATIO = 0.8  # intake / the parallel floor (issue 20; issue 9 had 0.5 against the sequential one)
TARGET_CPU_RATIO = 0.8  # floor CPU ÷ intake CPU per message, against the parallel floor (issue 20)
TARGET_RSS_MB = 300.0
TARGET_P95_S = 2.0  # steady arrival on an idle inbox (issue 9)
TARGET_P95_BACKLOG_S = 1.0  # small and medium mail arriving while a backlog drains (issue 20)


# -- facts ----------------------------------------------------------------------------------------------
def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine() -> dict[str, Any]:
    model = "?"
    mem_kb = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "os": _run(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"])}


def versions(clamd_url: str, pg_url: str | None, daemon_root: str | None = None) -> dict[str, Any]:
    from daemon.scanner import Scanner

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "clamd": Scanner(clamd_url, timeout=5).version() or "?",
        "dovecot": _run(["dovecot", "--version"]),
        "sqlite": sqlite3.sqlite_version,
        "intake_commit": _run(["git", "-C", str(Path(__file__).resolve().parent.parent), "rev-parse", "--short",
                               "HEAD"]),
        "intake_dirty": bool(_run(["git", "-C", str(Path(__file__).resolve().parent.parent), "status",
                                   "--porcelain", "daemon"])),
        "daemon_tree": daemon_tree_hash(Path(daemon_root) if daemon_root else Path(__file__).resolve().parent.parent),
    }
    from importlib import metadata

    for dist in ("sqlalchemy", "aioimaplib", "psycopg"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)  # aioimaplib has no __version__
    if pg_url:
        try:
            from sqlalchemy import create_engine, text

            engine = create_engine(pg_url)
            with engine.connect() as conn:
                out["postgresql"] = str(conn.execute(text("SHOW server_version")).scalar())
            engine.dispose()
        except Exception as exc:  # a report line, not a failure
            out["postgresql"] = f"unreachable ({exc.__class__.__name__})"
    return out


def daemon_tree_hash(root: Path) -> str:
    """SHA-256 (first 12) over every daemon/**/*.py of the tree the daemon runs from: the code under test can
    change while benchmarks run (other engineers edit the working tree), so each result names what it ran."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((root / "daemon").rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def corpus_summary(items: list[Item], build_s: float) -> dict[str, Any]:
    kinds = Counter(i.kind for i in items)
    sizes: dict[str, list[int]] = {}
    for i in items:
        sizes.setdefault(i.kind, []).append(i.size)
    return {"messages": len(items), "bytes": sum(i.size for i in items), "build_s": build_s,
            "by_kind": {k: {"count": kinds[k], "min": min(sizes[k]), "max": max(sizes[k]),
                            "mean": sum(sizes[k]) / len(sizes[k])} for k in MIX if k in kinds},
            "big_over_limit": sum(1 for i in items if i.kind == BIG and i.size > 20 * 1024 * 1024)}


def one_line(res: dict[str, Any]) -> str:
    if res["kind"] in ("backlog", "profile"):
        i = res["intake"]
        b = res.get("baseline")
        sq = res.get("baseline_sequential")
        base = (f"floor ({b.get('workers', 1)} conn.) {b['rate']:.2f} msg/s ({b['wall_s']:.0f} s), " if b else "")
        base += f"sequential floor {sq['rate']:.2f} msg/s ({sq['wall_s']:.0f} s), " if sq else ""
        ratio = f"ratio {_f(res.get('ratio_intake_to_baseline'))}" if b else ""
        ratio += f" (sequential {_f(res.get('ratio_intake_to_sequential'))})" if sq else ""
        ratio += f", CPU ratio {_f(res.get('cpu_ratio_baseline_to_intake'))}, " if b else ""
        return (f"{base}intake {i['rate']:.2f} msg/s ({i['drain_s']:.0f} s), {ratio}"
                f"RSS main {i['main_hwm_mb']:.0f} MB / tree {i['peak_tree_rss_mb']:.0f} MB, load {res['load_before']}")
    if res["kind"] == "backlog_arrivals":
        s, sm, md = res["small_medium"], res["small"], res["medium"]
        return (f"{res['arrival_messages']} arrivals at {_f(res['achieved_rate'], 1)}/s during a backlog of "
                f"{res['backlog_messages']} (left {res['backlog_left_at_arrivals_start']} at their start, "
                f"{res['backlog_left_at_arrivals_end']} at their end"
                + ("" if res["valid"] else ", **drained before the arrivals ended: not valid**")
                + f"): p50 {_f(s['p50'])} s p95 {_f(s['p95'])} s p99 {_f(s['p99'])} s "
                f"(small p95 {_f(sm['p95'])} s, medium p95 {_f(md['p95'])} s); backlog drained in "
                f"{_f(res['backlog_drain_s'], 0)} s" + _split_line(res.get("split", {}))
                + _looks_line(res.get("looks", {})))
    s = res["small_medium"]
    return (f"{res['messages']} msgs at {res['achieved_rate']:.1f}/s: small/medium p50 {_f(s['p50'])} s "
            f"p95 {_f(s['p95'])} s p99 {_f(s['p99'])} s; big p95 {_f(res['big_processed']['p95'])} s")


def _split_line(split: dict[str, Any]) -> str:
    """The slowest 5 % of the arrivals, part by part (the profile the p95 target needs)."""
    slow = split.get("slowest_5pct_mean")
    if not slow:
        return ""
    parts = ", ".join(f"{k} {_f(v)}" for k, v in slow.items() if k != "total" and v and v >= 0.005)
    return f"; slowest 5 %: {_f(slow['total'])} s = {parts}"


def _looks_line(looks: dict[str, Any]) -> str:
    """The looks for new mail, p50/p95 in ms of each part (see look_profile)."""
    if not looks:
        return ""
    return "; looks: " + ", ".join(f"{k.removesuffix('_ms')} {_f(v.get('p50'), 0)}/{_f(v.get('p95'), 0)}"
                                   for k, v in looks.items())


# -- rendering ------------------------------------------------------------------------------------------
def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _med(values: list[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return statistics.median(nums) if nums else None


def _get(d: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _by_db(runs: list[dict[str, Any]], dbs: list[str], kind: str | None = None) -> Iterator[tuple[str, list[Any]]]:
    """Each database that has runs (of this kind), with its runs: one table row each."""
    for db in dbs:
        rs = [r for r in runs if r["db"] == db and (kind is None or r["kind"] == kind)]
        if rs:
            yield db, rs


def _medians(runs: list[dict[str, Any]], path: str) -> tuple[float | None, str]:
    values = [_get(r, path) for r in runs]
    med = _med(values)
    spread = ", ".join(_f(v) for v in values)
    return med, spread


def _met(ok: bool | None) -> str:
    return "–" if ok is None else ("**met**" if ok else "**missed**")


def render(results: dict[str, Any], out_path: Path) -> str:
    runs = results["runs"]
    m, v, c = results["machine"], results.get("versions", {}), results.get("corpus", {})
    dbs = [db for db in ("sqlite", "postgres") if any(r["db"] == db for r in runs)]
    lines: list[str] = [
        "# Benchmarks: the intake against the floor (issues 9 and 20)",
        "",
        "Generated by `python -m bench` (bench/); the raw figures of every run go to `var/bench/results-<time>.json`",
        "(not in git). Medians over the runs, each run's own value in brackets.",
        "",
        "## Machine, versions, command",
        "",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB RAM, {m['os']}, Linux {m['kernel']}. "
        "The machine may be shared with other work: the load averages before each run are under \"Every run\".",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        *([f"- clamd: {results['signatures'].get('clamd', 1)} × {results['signatures'].get('set', 'test')} signatures, "
           f"cache {results['signatures']['cache']}"] if results.get("signatures", {}).get("cache") else []),
        *([f"- Daemon variant: PYTHONPATH={results['args']['intake_pythonpath']}"]
          if results["args"].get("intake_pythonpath") else []),
        *([f"- Extra [imap] config: {', '.join(results['args']['imap'])}"] if results["args"].get("imap") else []),
        *([f"- Daemon environment: {', '.join(results['args']['daemon_env'])}"]
          if results["args"].get("daemon_env") else []),
        f"- Command: `{results['command']}` (started {results['started']}, took "
        f"{_f(results.get('elapsed_s', 0) / 60, 1)} min)",
        f"- Corpus: {c.get('messages')} messages"
        + (" (**--small-only: the text comments alone**)" if results["args"].get("small_only") else "")
        + f", {_f(c.get('bytes', 0) / 1e6, 0)} MB, built in "
        f"{_f(c.get('build_s'), 1)} s; {c.get('big_over_limit')} of the big ones are over the 20 MiB limit "
        "(rejected `too_large` from their headers, never downloaded by the intake; the baseline fetches them).",
        "",
        "| category | messages | size min–max (mean) |",
        "|---|---:|---|",
    ]
    for kind, s in c.get("by_kind", {}).items():
        lines.append(f"| {kind} | {s['count']} | {s['min']:,}–{s['max']:,} B ({s['mean']:,.0f}) |")

    # -- throughput
    backlog_runs = [r for r in runs if r["kind"] == "backlog"]
    floor_workers = sorted({int(_get(r, "baseline.workers") or 1) for r in backlog_runs if r.get("baseline")})
    n_floor = "/".join(str(w) for w in floor_workers) or "–"
    floors = (f"the **parallel floor** on {n_floor} IMAP connections at once (one per core, `--baseline-workers`; "
              "each takes the next message when it is free), then the **sequential floor** (one connection, one "
              "message after the other) beside it. Ratios and targets are against the parallel floor; the "
              "sequential figures are in the columns marked so." if floor_workers != [1] else
              "one connection, one message after the other (the sequential floor alone: `--baseline-workers 1`, "
              "or results of a bench older than the parallel floor); the targets assume the parallel floor.")
    lines += ["", "## Backlog throughput (whole corpus in the inbox, then `intake --log-level INFO run`)", "",
              "Intake: from the daemon's `ready` log event to the last record's `created_at`. Floor: stdlib "
              "imaplib `UID FETCH BODY.PEEK[]` + clamd INSTREAM of every message, same corpus, same mailbox, just "
              f"before the intake run: {floors}", "",
              "The machine is shared, so wall-clock rates move with the load; the CPU columns are the load-independent "
              "view: CPU seconds per message of the intake (daemon + its extraction children + clamd) and of each "
              "floor (the bench's imaplib/INSTREAM client + clamd; Dovecot's side is left out of all), and the CPU "
              "ratio floor / intake per message (the rate the intake would reach, as a share of the floor's, if CPU "
              "were the only limit). Targets (issue 20): intake / parallel floor ≥ "
              f"{TARGET_RATIO:.2f}, CPU ratio ≥ {TARGET_CPU_RATIO:.2f}.", "",
              "| database | floor conn. | floor msg/s | sequential floor msg/s | intake msg/s | intake / floor | "
              f"target ≥ {TARGET_RATIO:.2f} | intake / sequential | drain s | until inbox empty s | startup s | "
              "CPU ms/msg floor / sequential / intake | CPU ratio | "
              f"target ≥ {TARGET_CPU_RATIO:.2f} | CPU ratio sequential |",
              "|---" * 15 + "|"]
    for db, rs in _by_db(runs, dbs, "backlog"):
        w, _ = _medians(rs, "baseline.workers")
        b, bs = _medians(rs, "baseline.rate")
        sq, sqs = _medians(rs, "baseline_sequential.rate")
        i, is_ = _medians(rs, "intake.rate")
        ratio, rsp = _medians(rs, "ratio_intake_to_baseline")
        sratio, _ = _medians(rs, "ratio_intake_to_sequential")
        d, ds = _medians(rs, "intake.drain_s")
        e, _ = _medians(rs, "intake.until_inbox_empty_s")
        st, _ = _medians(rs, "intake.startup_s")
        bc, _ = _medians(rs, "baseline.cpu_per_msg_ms")
        sc, _ = _medians(rs, "baseline_sequential.cpu_per_msg_ms")
        ic, _ = _medians(rs, "intake.cpu_per_msg_ms")
        cr, crs = _medians(rs, "cpu_ratio_baseline_to_intake")
        scr, _ = _medians(rs, "cpu_ratio_sequential_to_intake")
        lines.append(f"| {db} | {_f(w, 0)} | {_f(b)} [{bs}] | {_f(sq)}{f' [{sqs}]' if sq is not None else ''} | "
                     f"{_f(i)} [{is_}] | "
                     f"{_f(ratio)} [{rsp}] | {_met(ratio >= TARGET_RATIO if ratio is not None else None)} | "
                     f"{_f(sratio)} | {_f(d, 0)} [{ds}] | {_f(e, 0)} | {_f(st, 1)} | "
                     f"{_f(bc, 0)} / {_f(sc, 0)} / {_f(ic, 0)} | {_f(cr)} [{crs}] | "
                     f"{_met(cr >= TARGET_CPU_RATIO if cr is not None else None)} | {_f(scr)} |")

    # -- memory
    lines += ["", "## Peak memory (backlog run, defaults: max_in_flight 8, max_in_flight_bytes 48 MiB, "
              "parse_memory_bytes 128 MiB)", "",
              "Main: the daemon's VmHWM. Tree: the largest sum of VmRSS over the daemon and all its descendants "
              "(extraction forkserver and workers) at one sample (every 0.2 s). Child: the largest VmHWM of one child.",
              "", "| database | main VmHWM MB | target < 300 | peak tree RSS MB | largest child MB | children seen |",
              "|---|---|---|---|---|---|"]
    for db, rs in _by_db(runs, dbs, "backlog"):
        mh, mhs = _medians(rs, "intake.main_hwm_mb")
        tr, trs = _medians(rs, "intake.peak_tree_rss_mb")
        ch, _ = _medians(rs, "intake.max_child_hwm_mb")
        n, _ = _medians(rs, "intake.children_seen")
        lines.append(f"| {db} | {_f(mh, 0)} [{mhs}] | {_met(mh < TARGET_RSS_MB if mh is not None else None)} | "
                     f"{_f(tr, 0)} [{trs}] | {_f(ch, 0)} | {_f(n, 0)} |")

    # -- CPU split
    lines += ["", "## Where the time goes (backlog run)", "",
              "Stage wall time summed over all messages (the pipeline's `stage` log events; stages run in up to 8 "
              "worker threads at once, so these add up to more than the drain time). `record` is derived: from a "
              "message's last `stage` event to its `recorded` event (duplicate-text lookup, raw fsync, DB commit). "
              "The IMAP source does not log fetch timings: fetch is measured on the baseline side (same bytes, "
              "same server). CPU seconds from /proc (utime+stime).", ""]
    stage_names = ["scan", "parse", "classify", "extract", "comment", "record"]
    lines += ["| database | " + " | ".join(f"{s} s" for s in stage_names)
              + " | daemon CPU s | children CPU s | clamd CPU s (intake) | clamd CPU s (baseline) | "
              "baseline fetch s | baseline scan s |",
              "|---" * (len(stage_names) + 7) + "|"]
    for db, rs in _by_db(runs, dbs, "backlog"):
        cells = [_f(_medians(rs, f"intake.stages.wall_s_by_stage.{s}")[0], 1) for s in stage_names]
        cells += [_f(_medians(rs, p)[0], 1) for p in ("intake.cpu_main_s", "intake.cpu_children_s",
                                                      "intake.clamd_cpu_s", "baseline.clamd_cpu_s",
                                                      "baseline.fetch_s", "baseline.scan_s")]
        lines.append(f"| {db} | " + " | ".join(cells) + " |")
    profiles = [r for r in runs if r["kind"] == "profile" and r["intake"].get("pyspy")]
    for prof in profiles:
        lines += ["", f"py-spy (100 Hz, idle threads excluded, forkserver children included; {prof['db']}, "
                  f"not in the medians; raw stacks `{prof['intake'].get('pyspy_file')}`): share of CPU samples", "",
                  "| part | share |", "|---|---|"]
        for part, share in prof["intake"]["pyspy"].items():
            if not part.startswith("_"):
                lines.append(f"| {part} | {share * 100:.1f} % |")
        spy = prof["intake"]["pyspy"]
        lines.append(f"\n{spy.get('_resolved_samples', 0):.0f} samples with Python frames; "
                     f"{spy.get('_unresolved_samples', 0):.0f} without (left out).")

    # -- latency
    lat_runs = [r for r in runs if r["kind"] == "latency"]
    if lat_runs:
        lines += ["", f"## Latency from APPEND to record, steady arrival at {_f(lat_runs[0]['rate'], 0)} messages/s",
                  "", "The daemon idles (IDLE) on an empty inbox; the bench APPENDs mail at a steady rate on one "
                  "connection; latency = the record's `created_at` − the moment the APPEND completed (matched by the "
                  "APPENDUID UID). The target is on the small and medium part (no message over 5 MB); the big ones "
                  "are reported apart. "
                  + (f"Steady stream: the small and medium messages only; the big ones arrive on a second connection, "
                     f"one every {_f(lat_runs[0].get('big_interval_s'), 0)} s."
                     if lat_runs[0].get("big_interval_s") else
                     "Steady stream: the whole mix in corpus order (big messages are 5 % of it)."), "",
                  "| database | messages | achieved rate /s | small+medium p50 s | p95 s | p99 s | target p95 < 2 s | "
                  "big (processed) p50 / p95 / max s | big too_large p95 s |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for db, rs in _by_db(lat_runs, dbs):
            p50, s50 = _medians(rs, "small_medium.p50")
            p95, s95 = _medians(rs, "small_medium.p95")
            p99, _ = _medians(rs, "small_medium.p99")
            n, _ = _medians(rs, "messages")
            rate, _ = _medians(rs, "achieved_rate")
            b50, _ = _medians(rs, "big_processed.p50")
            b95, _ = _medians(rs, "big_processed.p95")
            bmax, _ = _medians(rs, "big_processed.max")
            t95, _ = _medians(rs, "big_too_large.p95")
            lines.append(f"| {db} | {_f(n, 0)} | {_f(rate, 1)} | {_f(p50)} [{s50}] | {_f(p95)} [{s95}] | {_f(p99)} | "
                         f"{_met(p95 < TARGET_P95_S if p95 is not None else None)} | {_f(b50)} / {_f(b95)} / "
                         f"{_f(bmax)} | {_f(t95)} |")

    # -- latency while a backlog drains
    arr_runs = [r for r in runs if r["kind"] == "backlog_arrivals"]
    if arr_runs:
        a0 = arr_runs[0]
        lines += ["", f"## Latency while a backlog drains: {_f(a0['rate'], 0)} messages/s of small and medium mail "
                  f"for {_f(a0['arrival_seconds'], 0)} s on a backlog of {a0['backlog_messages']}", "",
                  "The backlog run's corpus is in the inbox and the daemon starts on it (no floor here); "
                  f"{_f(a0['arrival_delay_s'], 0)} s after its `ready` the bench APPENDs other mail (its own corpus, "
                  "another seed; no big messages) at a steady rate on one connection. Latency as in the run above: "
                  "the record's `created_at` − the moment the APPEND completed (APPENDUID). Backlog left: the "
                  "backlog messages whose record came after the first / the last arrival's APPEND; a run whose "
                  "backlog drained before the arrivals ended is marked not valid (its arrivals no longer all met "
                  "a backlog). Small: text comments, rejected types, EICAR; medium: a Word or Excel 意見書 of "
                  f"50–400 KB. Target (issue 20): small+medium p95 < {TARGET_P95_BACKLOG_S:g} s.", "",
                  "| database | arrivals | achieved rate /s | backlog left at start / end | valid | small+medium "
                  f"p50 s | p95 s | p99 s | target p95 < {TARGET_P95_BACKLOG_S:g} s | small p50 / p95 / p99 s | "
                  "medium p50 / p95 / p99 s | backlog drain s (msg/s) |",
                  "|---" * 12 + "|"]
        for db, rs in _by_db(arr_runs, dbs):
            def m(path: str, digits: int = 2, rs: list[dict[str, Any]] = rs) -> str:
                return _f(_medians(rs, path)[0], digits)

            p95, s95 = _medians(rs, "small_medium.p95")
            valid = sum(1 for r in rs if r["valid"])
            lines.append(
                f"| {db} | {m('arrival_messages', 0)} | {m('achieved_rate', 1)} | "
                f"{m('backlog_left_at_arrivals_start', 0)} / {m('backlog_left_at_arrivals_end', 0)} | "
                f"{valid} of {len(rs)} | {m('small_medium.p50')} [{_medians(rs, 'small_medium.p50')[1]}] | "
                f"{_f(p95)} [{s95}] | {m('small_medium.p99')} | "
                f"{_met(p95 < TARGET_P95_BACKLOG_S if p95 is not None and valid == len(rs) else None)} | "
                f"{m('small.p50')} / {m('small.p95')} / {m('small.p99')} | "
                f"{m('medium.p50')} / {m('medium.p95')} / {m('medium.p99')} | "
                f"{m('backlog_drain_s', 0)} ({m('backlog_rate')}) |")
        split_rows = [(db, rs) for db, rs in _by_db(arr_runs, dbs) if any(r.get("split", {}).get("n") for r in rs)]
        if split_rows:
            keys = ["pickup", "look", "take", "scan", "parse", "classify", "extract", "comment", "other_stages",
                    "record", "between", "total"]
            lines += ["", "Where an arrival's time goes (seconds; median over each run's arrivals, then the median of "
                      "the runs; `slowest 5 %`: the mean over the arrivals at or above p95). pickup: from the APPEND "
                      "to the start of its first stage, split into look (until the first `arrivals_first` event "
                      "after the APPEND) and take (claim, size and body fetch, a free place and a worker thread); "
                      "scan includes the attachment scans; other_stages: received, "
                      "headers, size, duplicate; record: from the last stage to `recorded`; between: the rest "
                      "(waits between stages).", "",
                      "| database | over | " + " | ".join(keys) + " |", "|---" * (len(keys) + 2) + "|"]
            for db, rs in split_rows:
                for label, path in (("median", "split.median"), ("slowest 5 %", "split.slowest_5pct_mean")):
                    cells = [_f(_medians(rs, f"{path}.{k}")[0]) for k in keys]
                    lines.append(f"| {db} | {label} | " + " | ".join(cells) + " |")
            looks = ["since_last_look_ms", "search_ms", "claim_ms", "wait_ms", "fetch_ms"]
            lines += ["", "The daemon's looks for new mail that found some (ms, p50 / p95 over the looks, median of "
                      "the runs): since the look before (the arrivals lane looks every 100 ms, a pass without it every "
                      "250 ms; more means the event loop was busy elsewhere), the search, then taking what it found: "
                      "the claim with the size fetch, the wait "
                      "for a place, the body fetch and start.", "",
                      "| database | looks | " + " | ".join(k.removesuffix("_ms") for k in looks) + " |",
                      "|---" * (len(looks) + 2) + "|"]
            for db, rs in split_rows:
                cells = [f"{_f(_medians(rs, f'looks.{k}.p50')[0], 0)} / {_f(_medians(rs, f'looks.{k}.p95')[0], 0)}"
                         for k in looks]
                lines.append(f"| {db} | {_f(_medians(rs, 'looks.search_ms.n')[0], 0)} | " + " | ".join(cells) + " |")

    # -- linear
    lin = [r for r in runs if r["kind"] == "backlog" and r["intake"].get("linear")]
    lines += ["", "## Does the cost stay linear? First vs last 1,000 records", ""]
    if lin:
        lines += ["Seconds per message over the first 1,000 records (from `ready`) and over the last 1,000 (by commit "
                  "time), and the mean record step (derived as above) of the first and the last 1,000 record ids.", "",
                  "| database | messages | first 1,000 s/msg | last 1,000 s/msg | last / first | record step first "
                  "/ last ms |", "|---|---|---|---|---|---|"]
        for db, rs in _by_db(lin, dbs):
            f1, _ = _medians(rs, "intake.linear.first_1000_s_per_msg")
            l1, _ = _medians(rs, "intake.linear.last_1000_s_per_msg")
            ratio, rsp = _medians(rs, "intake.linear.ratio_last_first")
            r1, _ = _medians(rs, "intake.stages.windows.first_1000.record")
            r2, _ = _medians(rs, "intake.stages.windows.last_1000.record")
            lines.append(f"| {db} | {rs[0]['messages']} | {_f(f1, 3)} | {_f(l1, 3)} | {_f(ratio)} [{rsp}] | "
                         f"{_f((r1 or 0) * 1000, 1)} / {_f((r2 or 0) * 1000, 1)} |")
    else:
        lines.append("Not measured in this invocation (needs at least 2,000 messages).")

    # -- per run
    lines += ["", "## Every run", "", "| run | load 1/5/15 min before | result |", "|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['tag']} ({r['kind']}) | {' / '.join(str(x) for x in r['load_before'])} | {one_line(r)} |")
        if r["kind"] in ("backlog", "profile"):
            lines.append(f"| | statuses | {r['intake']['statuses']} |")
        for key in ("baseline", "baseline_sequential"):
            if r.get(key, {}).get("per_worker"):
                spans = ", ".join(f"{w['messages']:.0f} msgs {w['start_s']:.1f}–{w['end_s']:.1f} s"
                                  for w in r[key]["per_worker"])
                lines.append(f"| | {key.replace('_', ' ')} connections | {spans} |")

    generated = "\n".join(lines) + "\n"
    notes = ""
    if out_path.exists():
        old = out_path.read_text()
        if NOTES_MARKER in old:
            notes = old.split(NOTES_MARKER, 1)[1]
    return generated + "\n" + NOTES_MARKER + (notes if notes else "\n\n## Notes\n\n(analysis goes here)\n")


def derive(run: dict[str, Any]) -> dict[str, Any]:
    """Figures computed from a run's raw values (fills in results written by an older bench)."""
    i = run.get("intake")
    if run.get("kind") in ("backlog", "profile") and isinstance(i, dict) and "cpu_per_msg_ms" not in i:
        cpu = i.get("cpu_main_s", 0) + i.get("cpu_children_s", 0) + i.get("clamd_cpu_s", 0)
        i["cpu_per_msg_ms"] = cpu / max(1, i.get("records", 1)) * 1000
    return run


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.report RESULTS.json [MORE.json …] --output BENCHMARKS.md`: render again, runs merged."""
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    p.add_argument("results", nargs="+", help="results JSON written by python -m bench")
    p.add_argument("--output", default="BENCHMARKS.md")
    args = p.parse_args(argv)
    merged: dict[str, Any] | None = None
    commands = []
    for name in args.results:
        data = json.loads(Path(name).read_text())
        data["runs"] = [derive(r) for r in data["runs"]]
        commands.append(data["command"])
        if merged is None:
            merged = data
        else:
            merged["runs"] += data["runs"]
            merged["elapsed_s"] = merged.get("elapsed_s", 0) + data.get("elapsed_s", 0)
    assert merged is not None
    merged["command"] = "`; `".join(commands)
    out = Path(args.output)
    out.write_text(render(merged, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
