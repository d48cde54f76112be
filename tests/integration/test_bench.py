"""Smoke tests of the benchmark (bench/): the corpus has the issue's mix, and the baseline fetcher/scanner runs
against a real Dovecot and clamd on a handful of messages. The full benchmark is `python -m bench`, never run here."""

from __future__ import annotations

import email
import email.policy
import importlib
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
