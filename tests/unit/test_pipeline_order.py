"""The corridor (daemon/pipeline.py): one stage list, in the order the README draws, built per message from one
Rules object; the status and the alert a record raises are decided from plain data. No service is needed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any

from daemon.alerts.events import alert_for_status
from daemon.config import Config
from daemon.model import ACCEPTED, HELD, QUARANTINED, REJECTED, decide_status
from daemon.pipeline import Intake
from daemon.rules import load_rules

from conftest import RULES

README = Path(__file__).resolve().parents[2] / "README.md"
ORDER = ["received", "headers", "size", "duplicate", "scan", "parse", "scan_attachments", "classify", "extract",
         "comment"]


def intake_without_services(tmp_path: Path) -> Intake:
    # stage_list only binds the scanner; nothing is called, so no clamd or database is needed here.
    config = Config(data_dir=tmp_path, database_url="sqlite://", rules_path=RULES)
    return Intake(config=config, rules=load_rules(RULES), scanner=None, raw_store=None,  # type: ignore[arg-type]
                  sessions=None)  # type: ignore[arg-type]


def test_the_stage_list_is_the_readme_order(tmp_path: Path) -> None:
    intake = intake_without_services(tmp_path)
    assert [name for name, _ in intake.stage_list(intake.rules)] == ORDER


def test_the_readme_map_draws_the_same_order() -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split("## What it does", 1)[1].split("```", 2)[1]
    drawn = re.findall(r"→ (\w+)", block)
    assert drawn == ORDER, drawn


def test_each_stage_list_judges_by_the_rules_it_was_built_from(tmp_path: Path) -> None:
    from daemon.model import Arrival, Work

    intake = intake_without_services(tmp_path)
    small = dataclasses.replace(intake.rules, max_message_bytes=10)
    size_of = {name: stage for name, stage in intake.stage_list(small)}["size"]
    work = Work(arrival=Arrival(raw=b"", source="t", size=11), sha256=None, content_id=None, size=11)
    size_of(work)
    assert work.done and work.reasons == ["too_large"]


def test_status_precedence() -> None:
    assert decide_status([]) == ACCEPTED
    assert decide_status(["attachment_not_allowed"]) == REJECTED
    assert decide_status(["scan_unavailable", "attachment_not_allowed"]) == HELD
    assert decide_status(["virus", "scan_unavailable"]) == QUARANTINED


def test_which_statuses_raise_an_alert_and_what_it_carries() -> None:
    when = dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
    parts: list[Any] = []
    assert alert_for_status(ACCEPTED, when, 10, [], None, parts, "imap") is None
    assert alert_for_status(HELD, when, 10, ["scan_unavailable"], None, parts, "imap") is None
    draft = alert_for_status(QUARANTINED, when, 10, ["virus"], "Eicar-Test", parts, "imap")
    assert draft is not None and draft.category == "quarantined" and draft.record_id is None
    named = draft.for_record(42)
    assert named.record_id == 42 and named.payload["record"] == 42 and named.payload["signature"] == "Eicar-Test"
    rejected = alert_for_status(REJECTED, when, 10, ["too_large"], None, parts, "lmtp")
    assert rejected is not None and rejected.category == "rejected"
