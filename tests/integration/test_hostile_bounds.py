"""Issue 16.2–16.7 end to end (real clamd, SQLite and PostgreSQL): bounded shapes are verdicts in seconds,
many attachments are one extraction child, a Rust panic is one structured log event, the watchdog gives a
message up at once, and a failed ingest leaves no orphan raw file."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from daemon import extract as extraction
from daemon.extract import ExtractLimits, extract
from daemon.model import Arrival
from daemon.pipeline import Intake, StorageError
from daemon.store import records
from fuzz import hostile

CRASHES = Path(__file__).resolve().parents[2] / "fuzz" / "crashes"


def ingest(intake: Intake, raw: bytes) -> dict:
    rid = intake.process(Arrival(raw=raw, source="ingest")).id
    with intake.sessions() as session:
        msg = records.load(session, rid)
        assert msg is not None
        return {**records.to_contract(msg), "raw_area": msg.raw_area, "last_error": msg.last_error,
                "defects": msg.defects}


@pytest.mark.parametrize(("build", "which"), [
    (lambda: hostile.nested_multipart(5000), "mime_depth"),
    (lambda: hostile.many_attachments(10_000), "mime_parts"),
    (lambda: hostile.many_header_fields(100_000), "header_fields"),
    (lambda: hostile.long_header_line(5_000_000), "header_line"),
])
def test_a_monstrous_shape_is_rejected_as_malformed_structure_in_seconds(intake: Intake, build, which) -> None:
    raw = build()
    start = time.monotonic()
    rec = ingest(intake, raw)
    assert time.monotonic() - start < 30
    assert rec["status"] == "rejected" and "malformed_structure" in rec["reasons"], rec["reasons"]
    assert rec["defects"] == [f"limit:{which}"]
    assert rec["subject"] == "hostile" and rec["from"] == "hostile@example.jp"  # staff can tell the sender
    assert intake.raw_store.locate(rec["sha256"]) is not None  # the evidence is kept


def test_many_small_attachments_are_one_extraction_child(intake: Intake) -> None:
    before = extraction.children_started
    rec = ingest(intake, hostile.many_attachments(300))
    assert rec["status"] == "accepted", rec["reasons"]
    texts = rec["texts"]
    assert len(texts) == 301 and all(t["error"] is None for t in texts)
    assert extraction.children_started - before == 1


def test_the_message_character_budget_cuts_the_last_texts_by_name(intake: Intake) -> None:
    intake.rules = dataclasses.replace(intake.rules, limits=dataclasses.replace(intake.rules.limits,
                                                                                  max_message_chars=2000))
    rec = ingest(intake, hostile.many_attachments(200))
    errors = [t["error"] for t in rec["texts"]]
    assert errors[0] is None and "limit:message_chars" in errors
    assert sum(t["chars"] for t in rec["texts"]) <= 2000
    assert "extraction_failed" in rec["flags"]


def test_a_sheet_is_cut_at_its_cell_budget() -> None:
    result = extract(hostile.big_xlsx(5000, cols=2), "excel", "xlsx", ExtractLimits(max_sheet_cells=1000))
    assert result.error == "limit:sheet_cells"
    assert len(result.tables[0]) == 500 and result.tables[0][-1] == ["500", "500"]


def test_a_rust_panic_is_one_structured_log_event_not_raw_stderr(env: dict[str, str], tmp_path: Path) -> None:
    panic_xls = (CRASHES / "xls-calamine-panic-1.xls").read_bytes()
    eml = tmp_path / "panic.eml"
    eml.write_bytes(hostile.with_attachment("意見.xls", panic_xls, "application/vnd.ms-excel"))
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "ingest", "--json", str(eml)], env=env,
                          capture_output=True, timeout=300)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "panicked" not in err and "Traceback" not in err and "stack backtrace" not in err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert len(err.splitlines()) == len(events)  # every line is a JSON log line
    [failed] = [e for e in events if e.get("event") == "extraction_child_failed"]
    assert failed["error_class"] == "PanicException" and failed["error"] == "crashed"
    assert failed["stderr_bytes"] > 0  # the panic text was captured, and not logged
    rec = json.loads(done.stdout)
    [entry] = [t for t in rec["texts"] if t["source"] == "意見.xls"]
    assert entry["error"] == "crashed" and "extraction_failed" in rec["flags"]


def test_the_watchdog_records_a_hung_message_at_once(intake: Intake) -> None:
    # A fault on demand (no real input hangs any more): a stage that blocks until released.
    release = threading.Event()

    def hang(_work: object) -> None:
        release.wait(60)

    original = intake.stage_list
    intake.stage_list = lambda rules: [*original(rules), ("hang", hang)]  # type: ignore[method-assign]
    intake.config = dataclasses.replace(intake.config, message_budget_seconds=1.0)
    try:
        start = time.monotonic()
        rec = ingest(intake, hostile.many_attachments(2))
        elapsed = time.monotonic() - start
    finally:
        release.set()
    assert elapsed < 10
    assert rec["status"] == "rejected" and rec["reasons"] == ["processing_failed"]  # at once, not held
    assert rec["last_error"] == "watchdog:hang"
    assert rec["comments"] == [] and rec["attachments"] == []
    assert intake.raw_store.path_for(rec["sha256"]).exists()  # raw bytes kept


def test_the_watchdog_stops_a_real_slow_extraction(intake: Intake) -> None:
    body = "".join(f"<w:p><w:r><w:t>段落{i}</w:t></w:r></w:p>" for i in range(300_000))
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", '<Types xmlns="http://schemas.openxmlformats.org/package/2006/'
                    'content-types"><Override PartName="/word/document.xml" ContentType="application/'
                    'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
        zf.writestr("word/document.xml", '<w:document xmlns:w="http://schemas.openxmlformats.org/'
                    f'wordprocessingml/2006/main"><w:body>{body}</w:body></w:document>')
    raw = hostile.with_attachment("意見.docx", buf.getvalue(),
                                  "application/vnd.openxmlformats-officedocument.wordprocessingml.document")
    intake.config = dataclasses.replace(intake.config, message_budget_seconds=0.5)
    start = time.monotonic()
    rec = ingest(intake, raw)
    assert time.monotonic() - start < 15
    assert rec["status"] == "rejected" and rec["reasons"] == ["processing_failed"]
    assert rec["last_error"].startswith("watchdog:")


def test_a_failed_ingest_leaves_no_orphan_raw_file(intake: Intake) -> None:
    first = ingest(intake, hostile.many_attachments(1, body="先に届いた意見。"))
    engine = intake.sessions.kw["bind"]
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:  # a real database refusing the write (as a locked or immutable one would)
        if sqlite:
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'no'); END"))
        else:
            conn.execute(text("CREATE OR REPLACE FUNCTION intake_refuse() RETURNS trigger AS "
                              "$$ BEGIN RAISE EXCEPTION 'no'; END $$ LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON events FOR EACH ROW "
                              "EXECUTE FUNCTION intake_refuse()"))
    fresh = hostile.many_attachments(1, body="後から届いた意見。")
    sha = hashlib.sha256(fresh).hexdigest()
    try:
        with pytest.raises(StorageError):
            intake.process(Arrival(raw=fresh, source="ingest"))
        assert intake.raw_store.locate(sha) is None  # no orphan
        with pytest.raises(StorageError):  # the same bytes as a recorded mail: its file stays
            intake.process(Arrival(raw=hostile.many_attachments(1, body="先に届いた意見。"), source="ingest"))
        assert intake.raw_store.locate(first["sha256"]) is not None
    finally:  # the PostgreSQL database is shared by the session's tests: never leave the trigger behind
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER IF EXISTS refuse" if sqlite else "DROP TRIGGER IF EXISTS refuse ON events"))
    assert ingest(intake, fresh)["status"] == "accepted"
    assert intake.raw_store.locate(sha) is not None
