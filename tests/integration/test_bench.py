"""Smoke tests of the benchmark (bench/): the corpus has the issue's mix, the baseline fetcher/scanner runs
against a real Dovecot and clamd on a handful of messages (sequential and parallel), and one small `python -m bench`
run covers the parallel floor and the arrivals during a backlog. The full benchmark is never run here."""

from __future__ import annotations

import email
import email.policy
import importlib
import json
import os
import sys
import zipfile
from collections import Counter
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from daemon.config import PACKAGE_ROOT
from devkit.clamd import Clamd
from devkit.dovecot import Dovecot

if str(PACKAGE_ROOT) not in sys.path:
    sys.path.insert(0, str(PACKAGE_ROOT))  # bench/ is a folder of the repository, not an installed package
corpus: Any = importlib.import_module("bench.corpus")
baseline: Any = importlib.import_module("bench.baseline")
runner: Any = importlib.import_module("bench.runner")


def test_plan_has_the_issue_mix() -> None:
    counts = Counter(corpus.plan(200))
    assert counts == {"text_jis": 70, "text_utf8": 70, "word": 20, "excel": 20, "big": 10, "rejected": 6, "eicar": 4}
    assert len(corpus.plan(37)) == 37
    assert corpus.plan(50, seed=1) == corpus.plan(50, seed=1)


def test_written_corpus_is_unique_and_readable(tmp_path: Path) -> None:
    items = corpus.write(tmp_path, 40, "t")
    assert Counter(i.kind for i in items) == Counter(corpus.plan(40))
    assert len({i.message_id for i in items}) == 40
    raws = [Path(i.path).read_bytes() for i in items]
    assert len(set(raws)) == 40
    for item, raw in zip(items, raws, strict=True):
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert msg["Message-ID"] == item.message_id
        if item.kind == "text_jis":
            assert msg.get_content_charset() == "iso-2022-jp"
            assert "意見" in msg.get_content()
        if item.kind in ("word", "excel"):
            (part,) = list(msg.iter_attachments())
            data = part.get_content()
            assert 50_000 <= len(data) <= 320_000
            names = zipfile.ZipFile(BytesIO(data)).namelist()
            assert any(n.startswith(("word/", "xl/")) for n in names)
        if item.kind == "eicar":
            assert "EICAR" in next(msg.iter_attachments()).get_content()


def test_big_attachment_is_incompressible_and_sized() -> None:
    raw, _ = corpus.build(1, "big", "t")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    data = next(msg.iter_attachments()).get_content()
    assert corpus.BIG_RANGE[0] - 1000 <= len(data) <= corpus.BIG_RANGE[1] + 1000
    import zlib

    assert len(zlib.compress(data[:1_000_000], 1)) > 900_000  # clamd and the intake really carry these bytes


def test_analysis_helpers() -> None:
    stats = runner.latency_stats([float(x) for x in range(1, 101)])
    assert stats["n"] == 100 and stats["p50"] == pytest.approx(50.5) and stats["p95"] == pytest.approx(95.05)
    rows = [{"id": k, "created": 100.0 + k if k < 1000 else 1100.0 + 2 * (k - 1000)} for k in range(2000)]
    lin = runner.linear_check(rows, start=100.0)
    assert lin["ratio_last_first"] == pytest.approx(2.0, rel=0.01)
    events = [
        {"component": "pipeline", "event": "stage", "stage": "scan", "sha": "a", "duration_ms": 100.0,
         "timestamp": "2026-01-10T00:00:00.100000Z"},
        {"component": "pipeline", "event": "stage", "stage": "scan_attachments", "sha": "a", "duration_ms": 50.0,
         "timestamp": "2026-01-10T00:00:00.150000Z"},
        {"component": "pipeline", "event": "recorded", "record": 1, "sha": "a",
         "timestamp": "2026-01-10T00:00:00.400000Z"},
    ]
    split = runner.stage_split(events, [{"id": 1}])
    assert split["wall_s_by_stage"]["scan"] == pytest.approx(0.15)
    assert split["wall_s_by_stage"]["record"] == pytest.approx(0.25)
    # An arrival APPENDed at 23:59:59.5 (its record created at .4): 0.5 s before its first stage began; with
    # its attachment scan logged 50 ms later, those 50 ms are time between stages.
    appended_at = runner._ts({"timestamp": "2026-01-09T23:59:59.500000Z"})
    created = runner._ts({"timestamp": "2026-01-10T00:00:00.400000Z"})
    events[1]["timestamp"] = "2026-01-10T00:00:00.200000Z"
    arr = runner.arrival_split(events, [{"id": 1, "uid": 7, "created": created}], {7: appended_at})
    assert arr["n"] == 1 and arr["slowest_n"] == 1
    med = arr["median"]
    assert med["pickup"] == pytest.approx(0.5) and med["scan"] == pytest.approx(0.15)
    assert med["record"] == pytest.approx(0.2) and med["between"] == pytest.approx(0.05)
    assert med["total"] == pytest.approx(0.9) and med["parse"] == 0
    # A look for new mail that found something 0.3 s after the APPEND splits the pickup into look and take.
    events.append({"component": "imap", "event": "arrivals_first", "count": 1,
                   "timestamp": "2026-01-09T23:59:59.800000Z"})
    med = runner.arrival_split(events, [{"id": 1, "uid": 7, "created": created}], {7: appended_at})["median"]
    assert med["look"] == pytest.approx(0.3) and med["take"] == pytest.approx(0.2)
    assert med["between"] == pytest.approx(0.05)  # look and take are inside pickup, not added to it
    looks = runner.look_profile([
        {"event": "arrivals_first", "since_last_look_ms": 250, "search_ms": 2},
        {"event": "arrivals_first", "since_last_look_ms": 1250, "search_ms": 4},
        {"event": "arrivals_taken", "claim_ms": 30, "wait_ms": 0, "fetch_ms": 10}])
    assert looks["since_last_look_ms"] == {"n": 2, "p50": 750.0, "p95": pytest.approx(1200.0)}
    assert looks["claim_ms"]["n"] == 1 and looks["fetch_ms"]["p50"] == 10.0
    assert runner.arrival_split(events, [{"id": 1, "uid": 8, "created": created}], {7: appended_at}) == {"n": 0}


def test_baseline_fetches_and_scans_every_message(tmp_path: Path, clamd: Clamd) -> None:
    items = [i for i in corpus.write(tmp_path / "corpus", 60, "t") if i.kind != "big"][:10]
    items += [i for i in corpus.write(tmp_path / "eicar", 60, "e") if i.kind == "eicar"][:1]
    dovecot = Dovecot(tmp_path / "dovecot")
    dovecot.start()
    try:
        uids = runner.deliver(dovecot, items)
        assert sorted(uids) == list(range(1, len(items) + 1))
        result = baseline.run("127.0.0.1", dovecot.port, dovecot.user, dovecot.password, clamd.url)
        assert result.messages == len(items)
        assert result.bytes == sum(i.size for i in items)
        assert result.infected == sum(1 for i in items if i.kind == "eicar") >= 1
        assert result.rate > 0 and result.fetch_s > 0 and result.scan_s > 0
        assert dovecot.count("INBOX") == len(items)  # BODY.PEEK: nothing moved, nothing marked
    finally:
        dovecot.stop()


def test_parallel_floor_works_on_n_connections_at_once(tmp_path: Path, clamd: Clamd) -> None:
    items = [i for i in corpus.write(tmp_path / "corpus", 30, "p") if i.kind in ("text_jis", "text_utf8")][:12]
    dovecot = Dovecot(tmp_path / "dovecot")
    dovecot.start()
    try:
        runner.deliver(dovecot, items)
        par = baseline.run("127.0.0.1", dovecot.port, dovecot.user, dovecot.password, clamd.url, workers=3)
        seq = baseline.run("127.0.0.1", dovecot.port, dovecot.user, dovecot.password, clamd.url, workers=1)
        capped = baseline.run("127.0.0.1", dovecot.port, dovecot.user, dovecot.password, clamd.url, workers=50)
    finally:
        dovecot.stop()
    # Three connections, each of which fetched (they share one queue of UIDs), every UID once.
    assert par.workers == 3 and len(par.per_worker) == 3 and all(w["messages"] > 0 for w in par.per_worker)
    assert par.messages == seq.messages == sum(w["messages"] for w in par.per_worker) == len(items)
    assert sorted(par.per_uid) == sorted(seq.per_uid) == list(range(1, len(items) + 1))
    # The connections overlapped in time: every one started before any one ended.
    assert max(w["start_s"] for w in par.per_worker) < min(w["end_s"] for w in par.per_worker)
    assert seq.workers == 1 and [w["messages"] for w in seq.per_worker] == [len(items)]
    assert capped.workers == len(capped.per_worker) == len(items) and capped.messages == len(items)


def _bench(tmp_path: Path, name: str, *args: str) -> tuple[dict[str, Any], str]:
    """One small `python -m bench` run writing to tmp_path (never BENCHMARKS.md): its JSON results and report."""
    bench_main: Any = importlib.import_module("bench.__main__")
    out, raw = tmp_path / f"{name}.md", tmp_path / f"{name}.json"
    # The temp dir stays the system's (no --workdir tmp_path): clamd's socket path must stay under 108 bytes.
    argv = ["--runs", "1", "--messages", "150", "--no-latency", "--arrivals-during-backlog", "--latency-rate", "20",
            "--latency-seconds", "3", "--arrivals-delay", "1", "--output", str(out), "--json", str(raw), *args]
    assert bench_main.main(argv) == 0
    return json.loads(raw.read_text()), out.read_text()


def _check_arrivals(results: dict[str, Any], report_text: str, db: str) -> None:
    (r,) = [r for r in results["runs"] if r["kind"] == "backlog_arrivals"]
    assert r["db"] == db and r["arrival_messages"] == 60 and r["backlog_messages"] == 150
    # Measured while the backlog drained: some of it was left when the last arrival was APPENDed (derived from the
    # records' created_at, and seen live in the database at that moment).
    assert r["valid"] and 0 < r["backlog_left_at_arrivals_end"] <= r["backlog_left_at_arrivals_start"] <= 150
    assert r["records_at_arrivals_end"] < 150 + 60
    assert r["arrivals_during_backlog"] == 60
    assert r["ready_to_first_arrival_s"] >= 1.0
    sm = r["small_medium"]
    assert sm["n"] == 60 == r["small"]["n"] + r["medium"]["n"] and r["medium"]["n"] > 0
    for stats in (sm, r["small"], r["medium"]):
        assert 0 < stats["p50"] <= stats["p95"] <= stats["p99"] <= stats["max"]
    assert "## Latency while a backlog drains" in report_text
    # The profile of the arrivals: every arrival's time split, the parts adding up to its latency.
    split = r["split"]
    assert split["n"] == 60
    med = split["median"]
    assert med["scan"] > 0 and med["parse"] > 0 and med["pickup"] > 0
    assert med["total"] == pytest.approx(sm["p50"], rel=0.01)
    assert f"| {db} | slowest 5 % |" in report_text
    # The daemon logged each look that found new mail, and what taking it cost.
    looks = r["looks"]
    assert looks["since_last_look_ms"]["n"] >= 1 and looks["claim_ms"]["n"] >= 1
    assert looks["fetch_ms"]["p50"] >= 0 and "| since_last_look | search | claim | wait | fetch |" in report_text
    assert any(line.startswith(f"| {db} | 60 |") for line in report_text.splitlines())


def test_quick_run_parallel_floor_and_arrivals_during_backlog(tmp_path: Path) -> None:
    """`python -m bench` with the parallel floor (default: one connection per core) beside the sequential one, and
    small and medium mail arriving while a backlog drains; the JSON and the report say what the modes promise.
    The floors do not depend on the database, so PostgreSQL (when the tests have one) runs the arrivals only."""
    results, text = _bench(tmp_path, "sqlite", "--db", "sqlite")
    cores = os.cpu_count() or 1
    (r,) = [r for r in results["runs"] if r["kind"] == "backlog"]
    floor = r["baseline"]
    assert floor["workers"] == cores and len(floor["per_worker"]) == cores
    assert floor["messages"] == sum(w["messages"] for w in floor["per_worker"]) == 150
    assert r["intake"]["records"] == 150
    assert r["ratio_intake_to_baseline"] == pytest.approx(r["intake"]["rate"] / floor["rate"])
    assert r["cpu_ratio_baseline_to_intake"] > 0
    if cores > 1:
        seq = r["baseline_sequential"]
        assert seq["workers"] == 1 and [w["messages"] for w in seq["per_worker"]] == [150]
        assert r["ratio_intake_to_sequential"] == pytest.approx(r["intake"]["rate"] / seq["rate"])
        assert r["cpu_ratio_sequential_to_intake"] > 0
        assert "sequential floor msg/s" in text and f"| sqlite | {cores} |" in text
    _check_arrivals(results, text, "sqlite")

    pg = os.environ.get("INTAKE_TEST_POSTGRES_URL")
    if pg:
        results, text = _bench(tmp_path, "postgres", "--db", "postgres", "--postgres-url", pg, "--no-backlog")
        assert [r["kind"] for r in results["runs"]] == ["backlog_arrivals"]
        _check_arrivals(results, text, "postgres")
